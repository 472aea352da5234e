"""Layers: the Adaptive Class Weight (ACW) layer."""

from __future__ import annotations

from keras_focal.layers.adaptive_class_weight import AdaptiveClassWeight

__all__ = ["AdaptiveClassWeight"]
