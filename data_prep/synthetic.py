"""The built-in default data: synthetic PROMISE12-style MRI and DICOM ultrasound volumes.

Nothing is downloaded: `make_promise12_like` writes MetaImage volumes in
PROMISE12's layout and `make_ultrasound_like` writes DICOM series with mask
volumes, both deterministic for a seed, so every command of the project
runs on a fresh machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np

from keras_focal.types import Array, ArrayLike, PathLike

PROMISE12_SLICES = (15, 54)
PROMISE12_SIZES = (256, 320, 384, 512)
ULTRASOUND_SLICES = (20, 40)
ULTRASOUND_SIZES = (192, 224, 256)
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_RESCALE = (0.5, -10.0)  # slope, intercept: stored = (value - intercept) / slope


def _smooth_field(rng, shape, coarse=8):
    """Smooth random field in about [-1, 1]: coarse noise, upsampled."""
    from skimage.transform import resize

    small = rng.normal(size=(shape[0], max(2, shape[1] // coarse), max(2, shape[2] // coarse)))
    field = resize(small, shape, order=1, mode="reflect", anti_aliasing=False)
    return (field / (np.abs(field).max() + 1e-6)).astype(np.float32)


def _organ(rng, shape, spacing, center_mm, semi_axes_mm, roughness=0.08):
    """Boolean `(z, y, x)` mask of an irregular ellipsoid (smooth bumps on its surface)."""
    z, y, x = np.meshgrid(
        *(np.arange(n, dtype=np.float32) * s for n, s in zip(shape, (spacing[2], spacing[1], spacing[0]))),
        indexing="ij",
    )
    offsets = [(x - center_mm[0]) / semi_axes_mm[0], (y - center_mm[1]) / semi_axes_mm[1], (z - center_mm[2]) / semi_axes_mm[2]]
    radius = np.sqrt(sum(o * o for o in offsets)) + 1e-6
    bumps = np.ones_like(radius)
    for _ in range(4):
        frequency = rng.normal(size=3) * 0.7
        phase = rng.uniform(0, 2 * np.pi)
        bumps += roughness * np.cos(sum(f * o / radius for f, o in zip(frequency, offsets)) * np.pi + phase)
    return radius < bumps


def make_mri_volume(
    rng: np.random.Generator, slices: int, size: int,
) -> tuple[Array, Array, tuple[float, float, float]]:
    """One synthetic T2-like prostate MRI: `(image int16, mask uint8, spacing (x, y, z))`."""
    field_of_view = rng.uniform(120.0, 200.0)
    spacing_xy = float(np.clip(field_of_view / size, 0.27, 0.75))
    spacing_z = float(rng.uniform(2.2, 4.0))
    spacing = (spacing_xy, spacing_xy, spacing_z)
    extent = np.array([size * spacing_xy, size * spacing_xy, slices * spacing_z])
    semi_axes = np.array([rng.uniform(18, 28), rng.uniform(14, 22), rng.uniform(14, 24)])
    semi_axes[2] = min(semi_axes[2], 0.35 * extent[2])  # leave empty slices at both ends
    center = extent / 2 + np.array([rng.uniform(-10, 10), rng.uniform(-10, 10), rng.uniform(-0.1, 0.1) * extent[2]])
    shape = (slices, size, size)
    mask = _organ(rng, shape, spacing, center, semi_axes)

    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    body = (xx / rng.uniform(0.8, 0.95)) ** 2 + (yy / rng.uniform(0.6, 0.8)) ** 2 < 1
    texture = _smooth_field(rng, shape)
    image = np.where(body, 260.0, 8.0)[None] + 45.0 * texture * body[None]
    image = np.where(mask, 390.0 + 60.0 * texture, image)
    a, b, c = rng.normal(scale=0.15, size=3)
    bias = 1.0 + a * xx + b * yy + c * xx * yy  # coil sensitivity
    image = image * bias[None]
    noise = 14.0
    image = np.sqrt((image + rng.normal(scale=noise, size=shape)) ** 2 + rng.normal(scale=noise, size=shape) ** 2)
    return np.clip(image, 0, 32767).astype(np.int16), mask.astype(np.uint8), spacing


def make_promise12_like(
    out: PathLike, cases: int = 12, seed: int = 0, slices_range: tuple[int, int] = PROMISE12_SLICES,
    sizes: Sequence[int] = PROMISE12_SIZES, progress: bool = True,
) -> PathLike:
    """Writes `cases` PROMISE12-style cases under `out` (`TrainingData_Part1..3/`).

    Each case is `CaseNN.mhd/.raw` (int16 MRI) and
    `CaseNN_segmentation.mhd/.raw` (uint8, 0/1), with PROMISE12's ranges:
    15-54 slices of 256^2-512^2 pixels, 0.27-0.75 mm in-plane and 2.2-4 mm
    slice spacing. The prostate is an irregular ellipsoid of varying size
    and position that leaves empty slices at both ends; the image has
    tissue texture, a coil bias field and Rician noise. Deterministic for
    `seed`; the set is written to a temporary folder and renamed into place.
    """
    import SimpleITK as sitk
    from tqdm.auto import tqdm

    _check_count(cases, "cases")
    with staged_folder(out) as staging:
        for index in tqdm(range(cases), desc="MRI cases", unit="case", disable=None if progress else True):
            rng = np.random.default_rng([seed, index, 12])
            slices = int(rng.integers(slices_range[0], slices_range[1] + 1))
            size = int(rng.choice(sizes))
            image, mask, spacing = make_mri_volume(rng, slices, size)
            folder = os.path.join(staging, f"TrainingData_Part{index % 3 + 1}")
            os.makedirs(folder, exist_ok=True)
            origin = tuple(float(v) for v in rng.uniform(-100, 100, size=3))
            for array, suffix in ((image, ""), (mask, "_segmentation")):
                volume = sitk.GetImageFromArray(array)
                volume.SetSpacing(spacing)
                volume.SetOrigin(origin)
                sitk.WriteImage(volume, os.path.join(folder, f"Case{index:02d}{suffix}.mhd"))
    return out


def make_ultrasound_volume(
    rng: np.random.Generator, slices: int, size: int,
) -> tuple[Array, Array, tuple[float, float, float]]:
    """One synthetic TRUS-like volume: `(image float32 0..255, mask uint8, spacing (x, y, z))`."""
    spacing_xy = float(rng.uniform(0.25, 0.4))
    spacing_z = float(rng.uniform(0.8, 1.6))
    spacing = (spacing_xy, spacing_xy, spacing_z)
    extent = np.array([size * spacing_xy, size * spacing_xy, slices * spacing_z])
    semi_axes = np.array([rng.uniform(12, 18), rng.uniform(9, 14), rng.uniform(8, 14)])
    semi_axes[:2] = np.minimum(semi_axes[:2], 0.4 * extent[:2])
    semi_axes[2] = min(semi_axes[2], 0.35 * extent[2])
    center = extent / 2 + np.array([rng.uniform(-3, 3), rng.uniform(-2, 4), rng.uniform(-0.05, 0.05) * extent[2]])
    shape = (slices, size, size)
    mask = _organ(rng, shape, spacing, center, semi_axes, roughness=0.05)
    echo = 110.0 + 35.0 * _smooth_field(rng, shape, coarse=16)
    echo = np.where(mask, 65.0 + 20.0 * _smooth_field(rng, shape, coarse=8), echo)  # hypoechoic gland
    depth = np.linspace(1.0, 0.55, size, dtype=np.float32)[None, :, None]  # attenuation with depth
    speckle = rng.rayleigh(scale=np.sqrt(2 / np.pi), size=shape).astype(np.float32)  # mean 1
    image = np.clip(echo * depth * speckle, 0, 255)
    return image.astype(np.float32), mask.astype(np.uint8), spacing


def _tilted_orientation(rng):
    angle = np.deg2rad(rng.uniform(-12, 12))
    row = np.array([1.0, 0.0, 0.0])
    column = np.array([0.0, np.cos(angle), np.sin(angle)])
    return row, column, np.cross(row, column)


def _write_dicom_series(folder: str, case, image: ArrayLike, spacing, origin, orientation, rng, seed: int) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    row, column, normal = orientation
    slope, intercept = US_RESCALE
    stored = np.rint((image - intercept) / slope).astype(np.uint16)
    study = generate_uid(entropy_srcs=[str(seed), case, "study"])
    series = generate_uid(entropy_srcs=[str(seed), case, "series"])
    frame = generate_uid(entropy_srcs=[str(seed), case, "frame"])
    names = rng.permutation(len(image))  # file names do not follow the slice order
    os.makedirs(folder, exist_ok=True)
    for index, pixels in enumerate(stored):
        instance = generate_uid(entropy_srcs=[str(seed), case, str(index)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(US_IMAGE_STORAGE)
        meta.MediaStorageSOPInstanceUID = instance
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = US_IMAGE_STORAGE, instance
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID = ds.PatientName = case
        ds.Modality = "US"
        ds.SeriesNumber, ds.InstanceNumber = 1, index + 1
        ds.SeriesDescription = "synthetic 3D TRUS"
        position = np.asarray(origin) + index * spacing[2] * normal
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *column)]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.SpacingBetweenSlices = f"{spacing[2]:.6f}"
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = pixels.tobytes()
        ds.save_as(os.path.join(folder, f"IM_{names[index] + 1:04d}.dcm"), enforce_file_format=True)


def make_ultrasound_like(
    out: PathLike, cases: int = 5, seed: int = 0, slices_range: tuple[int, int] = ULTRASOUND_SLICES,
    sizes: Sequence[int] = ULTRASOUND_SIZES, progress: bool = True,
) -> PathLike:
    """Writes `cases` TRUS-like cases: `out/dicom/<case>/*.dcm` and `out/masks/<case>.nrrd`.

    Each case is a real DICOM series (one file per slice, unique UIDs,
    ImagePositionPatient along a slightly tilted ImageOrientationPatient,
    PixelSpacing, RescaleSlope 0.5 / RescaleIntercept -10, file names not
    in slice order) of a speckled volume with a hypoechoic prostate, and
    its mask as NRRD on the same grid. Deterministic for `seed`; the set
    is written to a temporary folder and renamed into place.
    """
    import SimpleITK as sitk
    from tqdm.auto import tqdm

    _check_count(cases, "cases")
    with staged_folder(out) as staging:
        os.makedirs(os.path.join(staging, "masks"))
        for index in tqdm(range(cases), desc="ultrasound cases", unit="case", disable=None if progress else True):
            rng = np.random.default_rng([seed, index, 5])
            slices = int(rng.integers(slices_range[0], slices_range[1] + 1))
            size = int(rng.choice(sizes))
            image, mask, spacing = make_ultrasound_volume(rng, slices, size)
            orientation = _tilted_orientation(rng)
            origin = rng.uniform(-50, 50, size=3)
            case = f"TRUS{index + 1:02d}"
            _write_dicom_series(os.path.join(staging, "dicom", case), case, image, spacing, origin, orientation, rng, seed)
            volume = sitk.GetImageFromArray(mask)
            volume.SetSpacing(spacing)
            volume.SetOrigin(tuple(float(v) for v in origin))
            volume.SetDirection(tuple(float(v) for v in np.stack(orientation, axis=1).ravel()))
            sitk.WriteImage(volume, os.path.join(staging, "masks", f"{case}.nrrd"), useCompression=True)
    return out


# The Decathlon's Task05_Prostate: T2 and ADC, peripheral and transition zones; its sizes, slices and spacing.
ZONE_CLASSES = ("background", "peripheral zone", "transition zone")
ZONE_CHANNELS = ("T2", "ADC")
ZONES_SLICES = (15, 22)
ZONES_SIZES = (160, 192)


def make_zones_volume(
    rng: np.random.Generator, slices: int, size: int,
) -> tuple[Array, Array, Array, tuple[float, float, float]]:
    """One synthetic two-zone prostate MRI: `(t2, adc float32 (z, y, x), labels uint8 0/1/2, spacing (x, y, z))`.

    The gland is an irregular ellipsoid; the transition zone (2) is a
    smaller one in its anterior (upper) part and the peripheral zone (1) the
    crescent of gland behind it. The channels show the zones with opposite
    contrast: on T2 the peripheral zone is the brightest tissue and the
    transition zone darker, on the ADC map the transition zone is bright and
    the peripheral zone close to its surroundings, so a network sees both
    zones well only through both channels.
    """
    spacing_xy = float(rng.uniform(0.55, 0.75))
    spacing_z = float(rng.uniform(3.0, 4.0))
    spacing = (spacing_xy, spacing_xy, spacing_z)
    extent = np.array([size * spacing_xy, size * spacing_xy, slices * spacing_z])
    semi_axes = np.array([rng.uniform(20, 26), rng.uniform(16, 20), rng.uniform(14, 20)])
    semi_axes[2] = min(semi_axes[2], 0.38 * extent[2])
    center = extent / 2 + np.array([rng.uniform(-6, 6), rng.uniform(-6, 6), 0.0])
    shape = (slices, size, size)
    gland = _organ(rng, shape, spacing, center, semi_axes)
    inner = semi_axes * np.array([0.72, 0.62, 0.8])
    transition = gland & _organ(rng, shape, spacing, center - np.array([0.0, 0.35 * semi_axes[1], 0.0]), inner, roughness=0.05)
    peripheral = gland & ~transition
    labels = np.where(transition, 2, np.where(peripheral, 1, 0)).astype(np.uint8)

    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    body = ((xx / 0.9) ** 2 + (yy / 0.7) ** 2 < 1)[None]
    texture = _smooth_field(rng, shape)
    t2 = np.where(body, 240.0, 10.0) + 35.0 * texture * body
    t2 = np.where(peripheral, 420.0 + 45.0 * texture, np.where(transition, 300.0 + 40.0 * texture, t2))
    adc = np.where(body, 900.0, 30.0) + 120.0 * _smooth_field(rng, shape) * body
    adc = np.where(transition, 1600.0, np.where(peripheral, 1050.0, adc)) + 80.0 * texture * gland
    bias = 1.0 + rng.normal(scale=0.1) * xx + rng.normal(scale=0.1) * yy
    t2 = np.sqrt((t2 * bias[None] + rng.normal(scale=12.0, size=shape)) ** 2 + rng.normal(scale=12.0, size=shape) ** 2)
    adc = np.clip(adc + rng.normal(scale=60.0, size=shape), 0, None)
    return t2.astype(np.float32), adc.astype(np.float32), labels, spacing


def make_decathlon_like(
    out: PathLike, cases: int = 12, seed: int = 0, slices_range: tuple[int, int] = ZONES_SLICES,
    sizes: Sequence[int] = ZONES_SIZES, progress: bool = True,
) -> PathLike:
    """Writes `cases` two-zone prostate cases twice: as a Decathlon task and as an nnU-Net v2 raw data set.

    - `out/msd/Task05_Prostate/`: `imagesTr/prostate_NN.nii.gz` (4-D NIfTI,
      T2 then ADC along the fourth axis), `labelsTr/prostate_NN.nii.gz`
      (0/1/2) and the Decathlon's `dataset.json` (`modality`, `labels`
      value -> name, `training`).
    - `out/nnunet/Dataset005_Prostate/`: the same voxels as
      `imagesTr/prostate_NN_0000.nii.gz` (T2) and `_0001` (ADC),
      `labelsTr/prostate_NN.nii.gz` and nnU-Net v2's `dataset.json`
      (`channel_names`, `labels` name -> value, `file_ending`).

    Deterministic for `seed`; written to a temporary folder and renamed into place.
    """
    import json

    import SimpleITK as sitk
    from tqdm.auto import tqdm

    _check_count(cases, "cases")
    with staged_folder(out) as staging:
        msd = os.path.join(staging, "msd", "Task05_Prostate")
        nnunet = os.path.join(staging, "nnunet", "Dataset005_Prostate")
        for folder in (msd, nnunet):
            for sub in ("imagesTr", "labelsTr"):
                os.makedirs(os.path.join(folder, sub))
        training = []
        for index in tqdm(range(cases), desc="two-zone MRI cases", unit="case", disable=None if progress else True):
            rng = np.random.default_rng([seed, index, 52])
            slices = int(rng.integers(slices_range[0], slices_range[1] + 1))
            size = int(rng.choice(sizes))
            t2, adc, labels, spacing = make_zones_volume(rng, slices, size)
            origin = tuple(float(v) for v in rng.uniform(-80, 80, size=3))
            name = f"prostate_{index:02d}"

            def volume(array: ArrayLike):
                image = sitk.GetImageFromArray(array)
                image.SetSpacing(spacing)
                image.SetOrigin(origin)
                return image

            channels = [volume(t2), volume(adc)]
            sitk.WriteImage(sitk.JoinSeries(channels), os.path.join(msd, "imagesTr", f"{name}.nii.gz"), useCompression=True)
            for channel, image in enumerate(channels):
                sitk.WriteImage(image, os.path.join(nnunet, "imagesTr", f"{name}_{channel:04d}.nii.gz"), useCompression=True)
            for folder in (msd, nnunet):
                sitk.WriteImage(volume(labels), os.path.join(folder, "labelsTr", f"{name}.nii.gz"), useCompression=True)
            training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
        common = {"name": "Prostate (synthetic)", "description": "keras-focal's synthetic two-zone prostate MRI",
                  "tensorImageSize": "4D", "numTraining": cases}
        with open(os.path.join(msd, "dataset.json"), "w") as stream:
            json.dump(common | {"modality": {str(i): n for i, n in enumerate(ZONE_CHANNELS)},
                                "labels": {str(i): n for i, n in enumerate(ZONE_CLASSES)},
                                "numTest": 0, "training": training, "test": []}, stream, indent=2)
        with open(os.path.join(nnunet, "dataset.json"), "w") as stream:
            json.dump({"channel_names": {str(i): n for i, n in enumerate(ZONE_CHANNELS)},
                       "labels": {n: i for i, n in enumerate(ZONE_CLASSES)},
                       "numTraining": cases, "file_ending": ".nii.gz", "name": common["name"]}, stream, indent=2)
    return out


def _check_count(value, name: str):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


@contextlib.contextmanager
def staged_folder(out: PathLike) -> Iterator[str]:
    """Yields a temporary folder beside `out`; on success it replaces `out`, on failure it is removed."""
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".synth-", dir=parent)
    try:
        yield staging
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
