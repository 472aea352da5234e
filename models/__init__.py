"""Network builders (`keras_focal.models`).

This folder installs as `keras_focal.models`. The DeepLabV3+, VGG19-FCN and
U-Net builders and the stability paper's networks are added by the models
issue; the classification head they share uses
`keras_focal.layers.AdaptiveClassWeight`.
"""
