"""Reproducible experiments (`keras-focal stability`)."""

from __future__ import annotations
