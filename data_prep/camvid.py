"""Colour-coded label images (CamVid) to class-index masks."""

import csv

import numpy as np

# MATLAB's CamVid example (camvidPixelLabelIDs): the 32 CamVid colours grouped
# into 11 classes; Void (0, 0, 0) and any colour not listed become 255 (ignore).
CAMVID_11 = {
    "Sky": [(128, 128, 128)],
    "Building": [(0, 128, 64), (128, 0, 0), (64, 192, 0), (64, 0, 64), (192, 0, 128)],
    "Pole": [(192, 192, 128), (0, 0, 64)],
    "Road": [(128, 64, 128), (128, 0, 192), (192, 0, 64)],
    "Pavement": [(0, 0, 192), (64, 192, 128), (128, 128, 192)],
    "Tree": [(128, 128, 0), (192, 192, 0)],
    "SignSymbol": [(192, 128, 128), (128, 128, 64), (0, 64, 64)],
    "Fence": [(64, 64, 128)],
    "Car": [(64, 0, 128), (64, 128, 192), (192, 128, 192), (192, 64, 128), (128, 64, 64)],
    "Pedestrian": [(64, 64, 0), (192, 128, 64), (64, 0, 192), (64, 128, 64)],
    "Bicyclist": [(0, 128, 192), (192, 0, 192)],
}


def read_palette_csv(path):
    """A palette from a CSV with columns `name,r,g,b` (several rows may share a name).

    Classes are numbered in order of first appearance; colours not listed
    map to 255 (ignore).
    """
    palette = {}
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        missing = {"name", "r", "g", "b"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"palette '{path}' needs the columns name,r,g,b; missing {sorted(missing)}.")
        for line, row in enumerate(reader, start=2):
            try:
                colour = tuple(int(row[c]) for c in "rgb")
            except ValueError:
                raise ValueError(f"palette '{path}' line {line}: r, g, b must be integers.") from None
            if not all(0 <= v <= 255 for v in colour):
                raise ValueError(f"palette '{path}' line {line}: colour {colour} is outside 0..255.")
            palette.setdefault(row["name"].strip(), []).append(colour)
    if not palette:
        raise ValueError(f"palette '{path}' lists no colour.")
    return palette


def rgb_to_labels(label_image, palette, ignore_label=255):
    """Maps an `(H, W, 3)` colour label image to class indices by exact colour.

    Args:
        label_image: uint8 RGB array.
        palette: `{class name: [(r, g, b), ...]}`; class `i` is the i-th name.
        ignore_label: label for colours not in the palette.

    Returns:
        uint8 `(H, W)` class indices.
    """
    label_image = np.asarray(label_image)
    if label_image.ndim != 3 or label_image.shape[-1] < 3:
        raise ValueError(f"a colour label image must be (H, W, 3); got shape {label_image.shape}.")
    if len(palette) >= ignore_label:
        raise ValueError(f"the palette has {len(palette)} classes; at most {ignore_label} fit below the ignore label.")
    codes = label_image[..., :3].astype(np.int32) @ np.array([65536, 256, 1], np.int32)
    lookup_codes, lookup_labels = [], []
    for index, colours in enumerate(palette.values()):
        for r, g, b in colours:
            lookup_codes.append(r * 65536 + g * 256 + b)
            lookup_labels.append(index)
    lookup_codes = np.asarray(lookup_codes)
    order = np.argsort(lookup_codes)
    lookup_codes, lookup_labels = lookup_codes[order], np.asarray(lookup_labels, np.uint8)[order]
    position = np.clip(np.searchsorted(lookup_codes, codes), 0, len(lookup_codes) - 1)
    found = lookup_codes[position] == codes
    return np.where(found, lookup_labels[position], ignore_label).astype(np.uint8)
