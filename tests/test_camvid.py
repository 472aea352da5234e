"""Colour label images to class indices."""

import numpy as np
import pytest

from keras_focal.data_prep.camvid import CAMVID_11, read_palette_csv, rgb_to_labels


def test_matlab_grouping_of_the_32_camvid_colours():
    colours = [c for group in CAMVID_11.values() for c in group]
    assert list(CAMVID_11) == [
        "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
    ]
    assert len(colours) == 31 and len(set(colours)) == 31  # plus Void (0, 0, 0) = 32
    assert (0, 0, 0) not in colours


@pytest.mark.parametrize(
    "colour, label",
    [((128, 128, 128), 0), ((192, 0, 128), 1), ((0, 0, 64), 2), ((192, 0, 64), 3), ((128, 128, 192), 4),
     ((192, 192, 0), 5), ((0, 64, 64), 6), ((64, 64, 128), 7), ((128, 64, 64), 8), ((64, 128, 64), 9),
     ((192, 0, 192), 10), ((0, 0, 0), 255), ((1, 2, 3), 255)],
)
def test_each_colour(colour, label):
    image = np.broadcast_to(np.array(colour, np.uint8), (2, 3, 3))
    np.testing.assert_array_equal(rgb_to_labels(image, CAMVID_11), np.full((2, 3), label))


def test_palette_csv(tmp_path):
    path = tmp_path / "palette.csv"
    path.write_text("name,r,g,b\nroad,10,10,10\ncar,1,2,3\nroad,20,20,20\n")
    palette = read_palette_csv(path)
    assert palette == {"road": [(10, 10, 10), (20, 20, 20)], "car": [(1, 2, 3)]}
    image = np.array([[[20, 20, 20], [1, 2, 3], [9, 9, 9]]], np.uint8)
    np.testing.assert_array_equal(rgb_to_labels(image, palette), [[0, 1, 255]])
    path.write_text("name,r,g\nroad,1,2\n")
    with pytest.raises(ValueError, match=r"needs the columns name,r,g,b; missing \['b'\]"):
        read_palette_csv(path)
    path.write_text("name,r,g,b\nroad,1,2,300\n")
    with pytest.raises(ValueError, match=r"line 2: colour \(1, 2, 300\) is outside 0\.\.255"):
        read_palette_csv(path)
