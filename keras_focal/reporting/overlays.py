"""Pictures of predictions: contour overlays, label-map panels, and their colour keys.

`overlay` draws the true (green) and predicted (red) foreground contours on
an image (yellow where they meet); `label_panels` shows image, truth and
prediction side by side in the class colours (`class_colours`), for data
sets in which every class is foreground (street scenes). `with_key` and
`with_class_key` add the key and a caption under a picture.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_focal.data_prep.camvid import CAMVID_11
from keras_focal.types import Array, ArrayLike, ClassNames


def overlay(
    image: ArrayLike, truth: ArrayLike, predicted: ArrayLike, foreground: Sequence[int], scale: int | None = None,
) -> Array:
    """RGB uint8: the image with true (green) and predicted (red) foreground contours; yellow where they meet."""
    from skimage.segmentation import find_boundaries

    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    # A photograph in colour; a volume's slice by its first channel (T2 of T2 + ADC) in grey.
    rgb = image[..., :3].copy() if image.shape[-1] in (3, 4) else np.repeat(image[..., :1], 3, axis=-1)
    rgb = rgb.astype(np.uint8)
    scale = scale or max(1, 448 // max(image.shape[:2]))  # 224 -> 448: contours a reader can see
    if scale > 1:
        rgb = np.kron(rgb, np.ones((scale, scale, 1), np.uint8))
        truth = np.kron(truth, np.ones((scale, scale), truth.dtype))
        predicted = np.kron(predicted, np.ones((scale, scale), predicted.dtype))
    true_edge = find_boundaries(np.isin(truth, foreground), mode="inner")
    predicted_edge = find_boundaries(np.isin(predicted, foreground), mode="inner")
    rgb[true_edge] = (0, 220, 0)
    rgb[predicted_edge] = (230, 30, 30)
    rgb[true_edge & predicted_edge] = (255, 220, 0)
    return rgb


OVERLAY_KEY = (((0, 220, 0), "truth"), ((230, 30, 30), "prediction"), ((255, 220, 0), "both"))
IGNORED_COLOUR = (0, 0, 0)  # pixels of the ignore label (void) in a label map


def class_colours(class_names: ClassNames) -> list[tuple[int, int, int]]:
    """One RGB colour per class: CamVid's own colour where the name is one of its 11 classes, else matplotlib's tab20."""
    import matplotlib

    table = matplotlib.colormaps["tab20"].colors  # type: ignore[attr-defined]  # a ListedColormap
    def tab20(index: int) -> tuple[int, int, int]:
        red, green, blue = (int(255 * c) for c in table[index % len(table)][:3])
        return red, green, blue

    return [CAMVID_11[name][0] if name in CAMVID_11 else tab20(index) for index, name in enumerate(class_names)]


def label_panels(
    image: ArrayLike, truth: ArrayLike, predicted: ArrayLike, class_names: ClassNames, ignore_label: int = 255,
) -> Array:
    """RGB uint8: image | true label map | predicted label map side by side, in the colours of `class_colours`.

    For data sets without a background class (every class is foreground), where
    contours of "the foreground" would outline every pixel.
    """
    colours = np.asarray(class_colours(class_names) + [IGNORED_COLOUR] * (256 - len(class_names)), np.uint8)
    colours[ignore_label] = IGNORED_COLOUR
    image = np.asarray(image)
    rgb = image[..., :3] if image.ndim == 3 and image.shape[-1] >= 3 else np.repeat(image.reshape(image.shape[:2] + (1,))[..., :1], 3, axis=-1)
    gap = np.full((rgb.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([rgb.astype(np.uint8), gap, colours[truth], gap, colours[predicted]], axis=1)


def _draw_key(picture, entries, caption):
    """`picture` above a white strip: `entries` ((colour, name), ...) as swatches, wrapped, then `caption`."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = picture.shape[:2]
    line = 17
    font = ImageFont.load_default(size=13)  # Pillow's bundled font: no font files needed
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [24 + int(measure.textlength(name, font=font)) for _, name in entries]
    canvas_width = max(width, int(8 + measure.textlength(caption, font=font)), 8 + min(sum(widths), 640))
    rows, x = 1, 4
    for entry_width in widths:  # how many lines the swatches take at this width
        if x + entry_width > canvas_width and x > 4:
            rows, x = rows + 1, 4
        x += entry_width
    canvas = Image.new("RGB", (canvas_width, height + (rows + 1) * line + 4), (255, 255, 255))
    canvas.paste(Image.fromarray(picture), (0, 0))
    draw = ImageDraw.Draw(canvas)
    x, y = 4, height + 3
    for (colour, name), entry_width in zip(entries, widths):
        if x + entry_width > canvas_width and x > 4:
            x, y = 4, y + line
        draw.rectangle([x, y + 2, x + 10, y + 12], fill=tuple(int(c) for c in colour), outline=(0, 0, 0))
        draw.text((x + 14, y), name, fill=(0, 0, 0), font=font)
        x += entry_width
    draw.text((4, y + line), caption, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def with_key(picture: ArrayLike, caption: str) -> Array:
    """`picture` (RGB uint8) above a white strip: the overlay's colour key, then `caption` (e.g. the Dice)."""
    return _draw_key(picture, OVERLAY_KEY, caption)


def with_class_key(picture: ArrayLike, class_names: ClassNames, caption: str) -> Array:
    """`label_panels`' picture above its key: each class's colour, void, then `caption`."""
    entries = list(zip(class_colours(class_names), class_names)) + [(IGNORED_COLOUR, "void (not scored)")]
    return _draw_key(picture, entries, caption)


