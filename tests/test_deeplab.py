"""DeepLabV3+ on ResNet-18."""

import numpy as np
import pytest

from keras_focal.models import deeplabv3_plus, resnet18_backbone
from tests.helpers import to_numpy


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_matlab_layout_at_224():
    model = deeplabv3_plus((224, 224, 3), num_classes=11)
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers if layer.name != "resnet18"}
    assert shapes["aspp_concat"] == (14, 14, 4 * 256)
    assert shapes["aspp_projection_relu"] == (14, 14, 256)
    assert shapes["decoder_upsample"] == (56, 56, 256)
    assert shapes["decoder_low_level_relu"] == (56, 56, 48)
    assert shapes["decoder_concat"] == (56, 56, 256 + 48)
    assert shapes["decoder_conv2_relu"] == (56, 56, 256)
    assert shapes["logits"] == (224, 224, 11)
    rates = [model.get_layer(f"aspp_3x3_rate{r}_conv").dilation_rate for r in (6, 12, 18)]
    assert rates == [(6, 6), (12, 12), (18, 18)]


def test_parameter_count_is_backbone_plus_head():
    # ASPP: 512*256 + 3*(9*512*256) + 4*2*256 (BN) ; projection 1024*256 + 512 ;
    # decoder: 64*48 + 96 ; 9*304*256 + 512 ; 9*256*256 + 512 ; classifier 256*2 + 2.
    head = (512 * 256 + 3 * 9 * 512 * 256 + 4 * 512) + (1024 * 256 + 512) + (64 * 48 + 96)
    head += (9 * 304 * 256 + 512) + (9 * 256 * 256 + 512) + (256 * 2 + 2)
    assert _trainable(deeplabv3_plus((64, 64, 3), 2)) == 11_176_512 + head


def test_output_stride_8_doubles_the_rates_and_image_pooling_adds_a_branch():
    model = deeplabv3_plus((64, 64, 3), 2, output_stride=8, image_pooling=True)
    assert model.get_layer("aspp_3x3_rate36_conv").dilation_rate == (36, 36)
    assert tuple(model.get_layer("aspp_concat").output.shape[1:]) == (8, 8, 5 * 256)
    assert model.get_layer("decoder_upsample").size == (2, 2)


@pytest.mark.parametrize("size", [(101, 77), (33, 47), (224, 224)])
def test_any_input_size(size):
    assert deeplabv3_plus((*size, 1), 2).output.shape == (None, *size, 2)


def test_encoder_weights_from_a_file(tmp_path):
    backbone = resnet18_backbone((32, 32, 3), output_stride=16)
    path = str(tmp_path / "resnet18.weights.h5")
    backbone.save_weights(path)
    model = deeplabv3_plus((32, 32, 3), 2, encoder_weights=path)
    for ours, theirs in zip(model.get_layer("resnet18").weights, backbone.weights):
        np.testing.assert_array_equal(to_numpy(ours), to_numpy(theirs))


def test_rejects_bad_output_stride_and_weights():
    with pytest.raises(ValueError, match=r"`output_stride` must be one of \(16, 8\) for DeepLabV3\+"):
        deeplabv3_plus((64, 64, 3), 2, output_stride=32)
    for bad in (1, "imagenet", "missing.weights.h5"):
        with pytest.raises(ValueError, match=r"`encoder_weights` must be None or the path of an existing ResNet-18"):
            deeplabv3_plus((64, 64, 3), 2, encoder_weights=bad)
