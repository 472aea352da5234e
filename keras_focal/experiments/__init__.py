"""Reproducible experiments (`keras-focal stability`)."""
