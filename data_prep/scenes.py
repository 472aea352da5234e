"""Built-in multi-class data: CamVid-style street scenes with rare classes.

`make_camvid_like` draws street scenes in perspective (sky, buildings,
road with lane markings, pavement, trees, fences, cars, poles with signs,
pedestrians and bicyclists) and writes them the way CamVid is distributed:
RGB frames `<sequence>_<frame>.png` beside colour label images
`<sequence>_<frame>_L.png` in CamVid's palette, so that `keras-focal prep
camvid` reads them unchanged. Every class of MATLAB's 11-class grouping is
present, with pixel shares like CamVid's (sky, building and road large;
pole, sign/symbol, pedestrian and bicyclist each under 2% of the pixels),
which is what losses for class imbalance are meant for. Nothing is
downloaded; the set is deterministic for a seed.
"""

from __future__ import annotations

import math
import os

import numpy as np

from keras_focal.data_prep.synthetic import _check_count, staged_folder
from keras_focal.types import Array, ArrayLike, PathLike

# One CamVid colour per drawn part (data_prep.camvid.CAMVID_11 groups them into the 11 classes).
# Lane markings, SUVs and walls use CamVid's own sub-class colours, so the grouping is exercised.
COLOURS = {
    "void": (0, 0, 0),
    "sky": (128, 128, 128),
    "building": (128, 0, 0),
    "wall": (64, 192, 0),
    "pole": (192, 192, 128),
    "road": (128, 64, 128),
    "lane_marking": (128, 0, 192),
    "pavement": (0, 0, 192),
    "tree": (128, 128, 0),
    "sign": (192, 128, 128),
    "fence": (64, 64, 128),
    "car": (64, 0, 128),
    "suv": (64, 128, 192),
    "pedestrian": (64, 64, 0),
    "bicyclist": (0, 128, 192),
}
FRAME_SIZE = (240, 180)  # width, height: CamVid's 960x720 at a quarter
FRAMES_PER_SEQUENCE = 10
MIN_SEQUENCES = 6  # enough sequences for 3 sequence-level folds with a validation sequence
FRAME_STEP = 30  # CamVid's labelled frames are 30 video frames apart


class _Canvas:
    """A label map (part names as indices into `COLOURS`) and an RGB image painted together."""

    def __init__(self, width, height) -> None:
        self.parts = list(COLOURS)
        self.labels = np.zeros((height, width), np.uint8)
        self.image = np.zeros((height, width, 3), np.float32)
        self.height, self.width = height, width

    def paint(self, mask: ArrayLike, part, colour, texture=None) -> None:
        """Paints `mask` (boolean, or `(rows, cols)` indices) with `part`'s label and `colour` (+ texture)."""
        self.labels[mask] = self.parts.index(part)
        colour = np.asarray(colour, np.float32)
        if texture is None:
            self.image[mask] = colour
        else:
            self.image[mask] = colour * (1.0 + texture[mask])[..., None]

    def label_image(self):
        palette = np.asarray(list(COLOURS.values()), np.uint8)
        return palette[self.labels]


def _smooth_noise(rng, height, width, scale):
    """Smooth noise in about [-1, 1] with features of `scale` pixels."""
    from skimage.transform import resize

    coarse = rng.normal(size=(max(2, math.ceil(height / scale)) + 1, max(2, math.ceil(width / scale)) + 1))
    field = resize(coarse, (height, width), order=3, mode="reflect", anti_aliasing=False)
    return (field / (np.abs(field).max() + 1e-6)).astype(np.float32)


def _style(rng):
    """What the frames of one sequence share: light, horizon, street width, colours, ego car."""
    return {
        "light": rng.uniform(0.75, 1.15),
        "horizon": rng.uniform(0.36, 0.46),
        "vanishing_x": rng.uniform(0.4, 0.6),
        "road_half_width": rng.uniform(0.6, 0.9),  # at the bottom row, in frame widths
        "pavement_width": rng.uniform(0.35, 0.7),
        "sky": rng.uniform([150, 170, 190], [200, 215, 245]),
        "building_colours": rng.uniform(70, 200, size=(6, 3)),
        "road": rng.uniform(85, 120),
        "pavement": rng.uniform([150, 140, 130], [190, 180, 170]),
        "trees": rng.uniform(0.8, 1.6),
        "hood": rng.uniform() < 0.5,  # the camera car's bonnet: void, as in CamVid's 0001TP
    }


def _ground_x(style, width, height, y, bottom_offset):
    """Column of the ground line through the vanishing point that meets the bottom row at `vanishing_x + bottom_offset`."""
    vanishing_y = style["horizon"] * height
    vanishing_x = style["vanishing_x"] * width
    return vanishing_x + bottom_offset * width * (y - vanishing_y) / (height - vanishing_y)


def _depth(style, height, y):
    """Perspective scale of a ground point at row `y`: 0 at the horizon, 1 at the bottom row."""
    vanishing_y = style["horizon"] * height
    return float(np.clip((y - vanishing_y) / (height - vanishing_y), 0.0, 1.0))


def _draw_street(canvas, rng, style):
    height, width = canvas.height, canvas.width
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    vanishing_y = style["horizon"] * height
    light = style["light"]

    sky_gradient = (rows / height)[..., None] * np.array([30, 20, 0], np.float32)
    canvas.paint(np.ones((height, width), bool), "sky", style["sky"] * light, 0.05 * _smooth_noise(rng, height, width, 40))
    canvas.image += sky_gradient

    # Ground: road between the inner lines, pavement out to the outer lines, buildings beyond.
    road = style["road_half_width"]
    outer = road + style["pavement_width"]
    below = rows > vanishing_y
    left_road = _ground_x(style, width, height, rows, -road)
    right_road = _ground_x(style, width, height, rows, road)
    left_outer = _ground_x(style, width, height, rows, -outer)
    right_outer = _ground_x(style, width, height, rows, outer)
    texture = 0.08 * _smooth_noise(rng, height, width, 6)

    # Buildings: blocks on both sides, their roofs falling towards the vanishing point.
    for side, outer_line in ((-1, left_outer), (1, right_outer)):
        edge = 0 if side < 0 else width
        x = float(edge)
        while (x - style["vanishing_x"] * width) * side > 2:
            depth = abs(x - style["vanishing_x"] * width) / (style["vanishing_x"] * width if side < 0 else (1 - style["vanishing_x"]) * width)
            block_width = max(4.0, rng.uniform(20, 70) * depth)
            x_next = x - side * block_width
            lo, hi = sorted((x, x_next))
            in_block = (cols >= lo) & (cols < hi)
            roof = vanishing_y - rng.uniform(0.5, 1.6) * depth * vanishing_y
            # down to the ground line on its side of the street
            facade = in_block & (rows >= roof) & (~below | ((cols < outer_line) if side < 0 else (cols > outer_line)))
            colour = style["building_colours"][rng.integers(len(style["building_colours"]))] * light
            part = "wall" if rng.uniform() < 0.15 else "building"
            canvas.paint(facade, part, colour, texture)
            # windows: a darker grid in the image only (the label stays building)
            spacing = max(3, int(12 * depth))
            windows = facade & ((rows.astype(int) % spacing) < spacing // 2) & ((cols.astype(int) % spacing) < spacing // 2)
            windows &= rows > roof + spacing
            canvas.image[windows] *= 0.55
            x = x_next

    pavement = below & (cols >= left_outer) & (cols <= right_outer)
    canvas.paint(pavement, "pavement", style["pavement"] * light, texture)
    kerb = below & (np.minimum(np.abs(cols - left_road), np.abs(cols - right_road)) < 1.0 + 2 * (rows - vanishing_y) / height)
    canvas.image[kerb & pavement] *= 0.8
    on_road = below & (cols > left_road) & (cols < right_road)
    canvas.paint(on_road, "road", np.full(3, style["road"] * light), texture)

    # Dashed centre line (CamVid's LaneMkgsDriv, grouped into Road).
    centre = _ground_x(style, width, height, rows, 0.0)
    dash = np.sin(np.log1p(np.maximum(rows - vanishing_y, 0)) * 9.0 + rng.uniform(0, 6.3)) > 0.1
    marking = on_road & (np.abs(cols - centre) < 0.4 + 3.0 * (rows - vanishing_y) / height) & dash & (rows > vanishing_y + 4)
    canvas.paint(marking, "lane_marking", np.full(3, 235.0 * light))
    return {"left_road": left_road, "right_road": right_road, "left_outer": left_outer, "right_outer": right_outer}


def _place_on_ground(style, height, width, side, rng, between, lines):
    """A ground point (x, y, depth) on one side of the street in the band between two of `lines`."""
    for _ in range(20):
        y = rng.uniform(style["horizon"] * height + 6, height - 2)
        inner, outer = (lines[f"{side}_{b}"][int(y), 0] for b in between)
        x = rng.uniform(min(inner, outer), max(inner, outer))
        if 0 <= x < width:
            return x, y, _depth(style, height, y)
    return None


def _disk(canvas, x, y, radius):
    from skimage.draw import disk

    return disk((y, x), max(radius, 0.7), shape=(canvas.height, canvas.width))


def _ellipse(canvas, x, y, ry, rx):
    from skimage.draw import ellipse

    return ellipse(y, x, max(ry, 0.7), max(rx, 0.7), shape=(canvas.height, canvas.width))


def _rectangle(canvas, x0, y0, x1, y1):
    from skimage.draw import rectangle

    top, bottom = sorted((int(round(y0)), int(round(y1))))
    left, right = sorted((int(round(x0)), int(round(x1))))
    top, left = max(top, 0), max(left, 0)
    bottom, right = min(bottom, canvas.height - 1), min(right, canvas.width - 1)
    if bottom < top or right < left:
        return np.zeros(0, int), np.zeros(0, int)
    return rectangle((top, left), end=(bottom, right), shape=(canvas.height, canvas.width))


def _tree(canvas, rng, style, x, y, depth) -> None:
    scale = (canvas.height - style["horizon"] * canvas.height) * depth
    trunk_height = scale * rng.uniform(0.5, 0.9)
    green = rng.uniform([50, 90, 30], [90, 140, 60]) * style["light"]
    leaves = 0.25 * _smooth_noise(rng, canvas.height, canvas.width, 3)
    canvas.paint(_rectangle(canvas, x - max(0.6, 0.03 * scale), y - trunk_height, x + max(0.6, 0.03 * scale), y), "tree", (90, 70, 50))
    for _ in range(rng.integers(2, 5)):
        radius = scale * rng.uniform(0.25, 0.5)
        cx, cy = x + rng.normal(0, radius * 0.5), y - trunk_height - rng.normal(radius * 0.3, radius * 0.3)
        canvas.paint(_ellipse(canvas, cx, cy, radius * rng.uniform(0.7, 1.0), radius), "tree", green, leaves)


def _fence(canvas, rng, style, lines, side) -> None:
    height = canvas.height
    top_y = rng.uniform(style["horizon"] * height + 5, style["horizon"] * height + 0.3 * (1 - style["horizon"]) * height)
    bottom_y = min(height - 1, top_y + rng.uniform(0.15, 0.4) * (1 - style["horizon"]) * height)
    mix = rng.uniform(0.1, 0.4)
    base_x = lines[f"{side}_outer"][:, 0] * (1 - mix) + lines[f"{side}_road"][:, 0] * mix  # a line on the pavement
    band = np.zeros((height, canvas.width), bool)
    for y in range(int(top_y), int(bottom_y)):
        post_height = 0.3 * (y - style["horizon"] * height)  # 0.3 x the depth scale at row y
        top = int(max(0, y - post_height))
        column = int(round(base_x[y]))
        if 0 <= column < canvas.width:
            band[top:y, max(0, column - 1):column + 1] = True
    rows, cols = np.mgrid[0:height, 0:canvas.width]
    slats = ((rows + cols) % 3 == 0)
    colour = rng.uniform(60, 140, size=3) * style["light"]
    canvas.paint(band, "fence", colour, np.where(slats, -0.35, 0.0).astype(np.float32))


def _pole(canvas, rng, style, x, y, depth, with_sign) -> None:
    scale = (1 - style["horizon"]) * canvas.height * depth
    top = y - scale * rng.uniform(0.9, 1.5)
    half = max(0.5, 0.015 * scale)
    canvas.paint(_rectangle(canvas, x - half, top, x + half, y), "pole", np.full(3, rng.uniform(70, 130)) * style["light"])
    if with_sign:
        size = max(1.5, 0.12 * scale)
        colour = [(200, 30, 30), (30, 60, 190), (230, 200, 30)][rng.integers(3)]
        if rng.uniform() < 0.5:
            canvas.paint(_disk(canvas, x, top, size), "sign", colour)
        else:
            canvas.paint(_rectangle(canvas, x - size, top - size, x + size, top + size * 0.8), "sign", colour)


def _car(canvas, rng, style, x, y, depth) -> None:
    scale = canvas.width * 0.36 * depth
    length, tall = scale * rng.uniform(0.8, 1.1), scale * rng.uniform(0.45, 0.6)
    part = "suv" if rng.uniform() < 0.25 else "car"
    colour = rng.uniform(20, 230, size=3) * style["light"]
    shine = 0.1 * _smooth_noise(rng, canvas.height, canvas.width, 8)
    canvas.paint(_rectangle(canvas, x - length / 2, y - tall * 0.6, x + length / 2, y), part, colour, shine)
    canvas.paint(_rectangle(canvas, x - length * 0.32, y - tall, x + length * 0.32, y - tall * 0.55), part, colour * 0.9, shine)
    canvas.paint(_rectangle(canvas, x - length * 0.27, y - tall * 0.93, x + length * 0.27, y - tall * 0.6), part, (40, 50, 60))
    for wheel in (-0.3, 0.3):
        canvas.paint(_disk(canvas, x + wheel * length, y - tall * 0.05, tall * 0.17), part, (20, 20, 20))


def _pedestrian(canvas, rng, style, x, y, depth) -> None:
    tall = (1 - style["horizon"]) * canvas.height * depth * rng.uniform(0.55, 0.75)
    clothes = rng.uniform(20, 160, size=3)
    canvas.paint(_ellipse(canvas, x, y - tall * 0.45, tall * 0.4, max(0.8, tall * 0.12)), "pedestrian", clothes)
    canvas.paint(_disk(canvas, x, y - tall * 0.9, max(0.8, tall * 0.09)), "pedestrian", (200, 160, 130))


def _bicyclist(canvas, rng, style, x, y, depth) -> None:
    tall = (1 - style["horizon"]) * canvas.height * depth * rng.uniform(0.55, 0.7)
    wheel = max(0.9, tall * 0.2)
    for offset in (-1.3, 1.3):
        rows, cols = _disk(canvas, x + offset * wheel, y - wheel, wheel)
        ring = (rows - (y - wheel)) ** 2 + (cols - (x + offset * wheel)) ** 2 >= (wheel * 0.55) ** 2
        canvas.paint((rows[ring], cols[ring]), "bicyclist", (30, 30, 30))
    canvas.paint(_ellipse(canvas, x, y - wheel - tall * 0.35, tall * 0.3, max(0.8, tall * 0.1)), "bicyclist", rng.uniform(40, 220, size=3))
    canvas.paint(_disk(canvas, x, y - wheel - tall * 0.7, max(0.8, tall * 0.08)), "bicyclist", (200, 160, 130))


def make_scene(
    rng: np.random.Generator, style: dict, width: int = FRAME_SIZE[0], height: int = FRAME_SIZE[1],
) -> tuple[Array, Array]:
    """One street scene: `(image uint8 (H, W, 3), label image uint8 (H, W, 3) in CamVid's colours)`."""
    canvas = _Canvas(width, height)
    lines = _draw_street(canvas, rng, style)
    # Objects, far ones first so that near ones occlude them.
    objects: list[tuple] = []
    for side in ("left", "right"):
        for _ in range(rng.poisson(3.5 * style["trees"]) + 1):
            spot = _place_on_ground(style, height, width, side, rng, ("outer", "outer"), lines)
            if spot:
                objects.append((spot[1], _tree, spot))
        for _ in range(rng.integers(0, 3)):
            spot = _place_on_ground(style, height, width, side, rng, ("road", "road"), lines)
            if spot:
                # a kerb-side pole stands 2 px off the kerb, away from the road (bound now: `side` changes)
                objects.append((spot[1], lambda c, r, s, x, y, d, off=2 if side == "right" else -2: _pole(c, r, s, x + off, y, d, True), spot))
        for _ in range(rng.integers(0, 2)):
            spot = _place_on_ground(style, height, width, side, rng, ("road", "outer"), lines)
            if spot:
                objects.append((spot[1], lambda c, r, s, x, y, d: _pole(c, r, s, x, y, d, r.uniform() < 0.4), spot))
        for _ in range(rng.integers(0, 3)):
            spot = _place_on_ground(style, height, width, side, rng, ("road", "outer"), lines)
            if spot:
                objects.append((spot[1], _pedestrian, spot))
    for _ in range(rng.integers(1, 4)):
        y = rng.uniform(style["horizon"] * height + 8, height - 1)
        left, right = lines["left_road"][int(y), 0], lines["right_road"][int(y), 0]
        x = rng.uniform(left + 0.2 * (right - left), right - 0.2 * (right - left))
        objects.append((y, _car, (x, y, _depth(style, height, y))))
    for _ in range(rng.integers(1, 3)):
        y = rng.uniform(style["horizon"] * height + 8, height - 1)
        side = rng.choice(("left", "right"))
        edge = lines[f"{side}_road"][int(y), 0]
        x = edge + (1 if side == "left" else -1) * rng.uniform(0.03, 0.12) * width * _depth(style, height, y)
        objects.append((y, _bicyclist, (x, y, _depth(style, height, y))))
    for side in ("left", "right"):
        if rng.uniform() < 0.8:
            _fence(canvas, rng, style, lines, side)
    for _, draw, (x, y, depth) in sorted(objects, key=lambda item: item[0]):
        draw(canvas, rng, style, x, y, depth)
    if style["hood"]:
        rows, cols = np.mgrid[0:height, 0:width]
        bonnet = rows > height * (0.93 - 0.05 * np.cos((cols / width - 0.5) * np.pi))
        canvas.paint(bonnet, "void", (25, 25, 30))

    from skimage.filters import gaussian

    image = gaussian(canvas.image, sigma=0.6, channel_axis=-1, preserve_range=True)  # the lens; labels stay sharp
    image = image * (1.0 + 0.12 * _smooth_noise(rng, height, width, 60))[..., None]  # uneven light
    image = image + rng.normal(scale=6.0, size=image.shape)  # sensor noise
    return np.clip(image, 0, 255).astype(np.uint8), canvas.label_image()


def scene_names(scenes: int) -> list[tuple[int, str, str]]:
    """`(sequence number, sequence name, frame name)` of `scenes` frames.

    About 10 frames per sequence and at least 6 sequences (one frame each
    when there are fewer scenes), numbered like CamVid's `0001TP_006690`.
    """
    sequences = min(scenes, max(MIN_SEQUENCES, math.ceil(scenes / FRAMES_PER_SEQUENCE)))
    return [
        (index % sequences, f"Seq{index % sequences + 1:02d}SY", f"{(index // sequences + 1) * FRAME_STEP:06d}")
        for index in range(scenes)
    ]


def make_camvid_like(
    out: PathLike, scenes: int = 60, seed: int = 0, size: tuple[int, int] = FRAME_SIZE, progress: bool = True,
) -> PathLike:
    """Writes `scenes` CamVid-style street scenes under `out` and returns `out`.

    Files: `out/<sequence>_<frame>.png` (RGB) and `out/<sequence>_<frame>_L.png`
    (labels in CamVid's colours; the camera car's bonnet is void, black, as
    in CamVid). Frames are 240x180 (CamVid's 960x720 at a quarter) and
    grouped in sequences of about 10 that share a street's look, so that
    folds by sequence (`prep camvid`'s default) keep similar frames together.
    Deterministic for `seed`; written to a temporary folder and renamed into place.

    Args:
        out: the folder to write (replaced if it exists).
        scenes: number of frames, >= 1.
        seed: seeds every random choice.
        size: `(width, height)` of a frame.
        progress: show a progress bar.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    _check_count(scenes, "scenes")
    width, height = size
    if min(width, height) < 32:
        raise ValueError(f"`size` must be at least 32x32 pixels. Received: size={size!r}")
    with staged_folder(out) as staging:
        styles = {}
        for number, sequence, frame in tqdm(scene_names(scenes), desc="street scenes", unit="scene", disable=None if progress else True):
            if number not in styles:
                styles[number] = _style(np.random.default_rng([seed, number, 11]))
            rng = np.random.default_rng([seed, number, int(frame), 11])
            image, labels = make_scene(rng, styles[number], width, height)
            Image.fromarray(image).save(os.path.join(staging, f"{sequence}_{frame}.png"))
            Image.fromarray(labels).save(os.path.join(staging, f"{sequence}_{frame}_L.png"))
    return out
