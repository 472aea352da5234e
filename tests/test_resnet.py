"""The ResNet-18 backbone."""

import numpy as np
import pytest

from keras_focal.models import resnet18_backbone


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("output_stride", [None, 8, 16, 32])
def test_torchvision_parameter_count_at_every_output_stride(output_stride):
    # torchvision's resnet18: 11,689,512 parameters, less the 513,000 of its fc layer.
    assert _trainable(resnet18_backbone((64, 64, 3), output_stride)) == 11_176_512


@pytest.mark.parametrize(
    "output_stride, sizes",
    [
        (None, {"stage1": 112, "stage2": 56, "stage3": 28, "stage4": 14, "stage5": 7}),
        (32, {"stage1": 112, "stage2": 56, "stage3": 28, "stage4": 14, "stage5": 7}),
        (16, {"stage1": 112, "stage2": 56, "stage3": 28, "stage4": 14, "stage5": 14}),
        (8, {"stage1": 112, "stage2": 56, "stage3": 28, "stage4": 28, "stage5": 28}),
    ],
)
def test_named_stage_outputs(output_stride, sizes):
    outputs = resnet18_backbone((224, 224, 3), output_stride).output
    channels = {"stage1": 64, "stage2": 64, "stage3": 128, "stage4": 256, "stage5": 512}
    assert {k: tuple(v.shape[1:]) for k, v in outputs.items()} == {
        k: (sizes[k], sizes[k], channels[k]) for k in sizes
    }


@pytest.mark.parametrize(
    "output_stride, dilations", [(None, (1, 1)), (16, (1, 2)), (8, (2, 4))]
)
def test_dilation_replaces_the_stride(output_stride, dilations):
    model = resnet18_backbone((64, 64, 3), output_stride)
    for stage, dilation in zip(("stage4", "stage5"), dilations):
        for name in (f"{stage}_block1_conv2", f"{stage}_block2_conv1"):
            assert model.get_layer(name).dilation_rate == (dilation, dilation)


def test_odd_sizes_round_up_and_any_channel_count():
    outputs = resnet18_backbone((101, 77, 5), 16).output
    assert tuple(outputs["stage2"].shape[1:3]) == (26, 20)
    assert tuple(outputs["stage5"].shape[1:3]) == (7, 5)


@pytest.mark.parametrize("bad", [4, 12, 64, "16"])
def test_rejects_unknown_output_stride(bad):
    with pytest.raises(ValueError, match=r"`output_stride` must be one of \(None, 8, 16, 32\)"):
        resnet18_backbone((64, 64, 3), bad)
