"""Data preparation (`keras_focal.data_prep`): volumes and label images to PNG datasets.

- `find_promise12_cases`, `find_dicom_cases`, `find_rgb_label_cases`,
  `find_msd_cases`, `find_nnunet_cases`, `find_volume_pairs`: the cases of
  each source; `prepare_dataset` slices, resizes and writes them (`FoldSettings`:
  how cases are split; `SourceInfo`: what the source reported besides its cases)
  (`OUT/images`, `OUT/masks`, manifest.csv, classes.json, folds.csv) safely
  and resumably, a multi-channel volume's slices as one grey PNG per channel.
- `LabelTable`: class names and the label values that mark them in a source.
- `label_object_mask`: a DICOM SEG or RTSTRUCT on an image series' grid.
- `read_volume` (nibabel for NIfTI, SimpleITK otherwise; whole files checked) and `read_dicom_volume` (pydicom, sorted along
  the slice normal, rescaled) return `Volume`s with their geometry
  (`Volume.geometry()`, a `Geometry`: size, spacing, origin, direction; each
  prepared case records it, and `Geometry.image` writes an array on it).
- `make_promise12_like`, `make_ultrasound_like`, `make_decathlon_like`: the built-in synthetic data.
- `find_image_pairs`, `CAMVID_11`, `SEGNET_CLASSES`, `rgb_to_labels`, `read_palette_csv`: 2-D image sets
  (SegNet's CamVid copy, CamVid's colour labels), index or colour masks.
- `DataSplit`, `read_split_file`: a data set's own split (split.csv, or given folds).

The command line is `keras-focal prep synth|promise12|dicom|camvid|msd|nnunet|volumes`.
"""

from __future__ import annotations

from keras_focal.data_prep.camvid import (
    CAMVID_11,
    SEGNET_CLASSES,
    find_image_pairs,
    find_rgb_label_cases,
    read_palette_csv,
    rgb_to_labels,
)
from keras_focal.data_prep.dataset import (
    Case,
    CaseData,
    FoldSettings,
    PrepOptions,
    PrepReport,
    SourceInfo,
    assign_folds,
    prepare_dataset,
)
from keras_focal.data_prep.decathlon import find_msd_cases, find_nnunet_cases, find_volume_pairs
from keras_focal.data_prep.dicom import read_dicom_volume
from keras_focal.data_prep.dicom_labels import label_object_mask
from keras_focal.data_prep.labels import LabelTable
from keras_focal.data_prep.slicing import normalize_intensity, resize_image, resize_mask, select_slices
from keras_focal.data_prep.sources import find_dicom_cases, find_promise12_cases
from keras_focal.data_prep.splits import DataSplit, read_split_file
from keras_focal.data_prep.synthetic import make_decathlon_like, make_promise12_like, make_ultrasound_like
from keras_focal.data_prep.volume import CaseError, Geometry, Volume, check_same_grid, read_volume

__all__ = [
    "CAMVID_11", "Case", "DataSplit", "FoldSettings", "SourceInfo", "SEGNET_CLASSES", "find_image_pairs", "read_split_file", "CaseData", "CaseError", "Geometry", "LabelTable", "PrepOptions", "PrepReport", "Volume",
    "assign_folds", "check_same_grid", "find_dicom_cases", "find_msd_cases", "find_nnunet_cases", "find_promise12_cases",
    "find_rgb_label_cases", "find_volume_pairs", "label_object_mask", "make_decathlon_like",
    "make_promise12_like", "make_ultrasound_like", "normalize_intensity", "prepare_dataset",
    "read_dicom_volume", "read_palette_csv", "read_volume", "resize_image", "resize_mask",
    "rgb_to_labels", "select_slices",
]
