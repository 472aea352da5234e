"""Network builders (`keras_focal.models`).

- `deeplabv3_plus`: DeepLabV3+ on a ResNet-18 backbone (MATLAB's
  `deeplabv3plusLayers(..., "resnet18")`).
- `vgg19_fcn`: FCN-8s on the VGG19 convolutional layers.
- `unet`: Ronneberger's U-Net.
- `resnet18_backbone`: the ResNet-18 feature extractor with named stages.
- `stability_cnn`, `stability_unet`: the networks of Note on the Stability of
  the Focal Loss (Table 2 and Table 3).

The three segmentation builders share one head: a classifier whose
full-resolution output is the layer `logits`, then `acw` (the
`AdaptiveClassWeight` layer, only when `acw_weights` is given) and
`probabilities` (softmax, or sigmoid for one class), both in float32. Each
has a `check_<builder>_arguments` that refuses what the builder would
refuse without building (the trainer checks a whole grid with them); the
trainer's table of them is `keras_focal.model_names`.
"""

from __future__ import annotations

from keras_focal.models.deeplab import check_deeplabv3_plus_arguments, deeplabv3_plus
from keras_focal.models.fcn import check_vgg19_fcn_arguments, vgg19_fcn
from keras_focal.models.resnet import resnet18_backbone
from keras_focal.models.stability import stability_cnn, stability_unet
from keras_focal.models.unet import check_unet_arguments, unet

__all__ = [
    "check_deeplabv3_plus_arguments", "check_unet_arguments", "check_vgg19_fcn_arguments", "deeplabv3_plus",
    "resnet18_backbone", "stability_cnn", "stability_unet", "unet", "vgg19_fcn",
]
