"""The error of one case's input: the case fails with a message naming its file, the other cases go on."""

from __future__ import annotations


class CaseError(Exception):
    """A problem with one case's input; the case fails, the others go on."""
