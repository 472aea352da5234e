"""Data preparation (`keras_focal.data_prep`).

This folder installs as `keras_focal.data_prep`. Slicing of MHD / DICOM
volumes and CamVid-style label sets into PNG pairs is added by the data-prep
issue.
"""
