"""MkDocs hook: show mkdocstrings the package as it installs.

`models/` and `data_prep/` are top-level folders that install as
`keras_focal.models` and `keras_focal.data_prep` (pyproject.toml's
`[tool.setuptools] package-dir`). mkdocstrings reads sources from disk, where
`keras_focal/` has no such sub-folders, so before the build this hook lays out
`build/docs-source/keras_focal/` as the wheel does: links to every entry of
`keras_focal/`, plus one link per mapped sub-package. mkdocs.yml points the
Python handler's `paths` there.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # the docs extra installs tomli on Python 3.10
    import tomli as tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAYOUT = ROOT / "build" / "docs-source"


def installed_layout() -> pathlib.Path:
    """Builds the installed package's tree of links and returns the folder that holds it."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir: dict[str, str] = setuptools["package-dir"]
    if LAYOUT.exists():
        shutil.rmtree(LAYOUT)
    package = LAYOUT / "keras_focal"
    package.mkdir(parents=True)
    for entry in (ROOT / package_dir["keras_focal"]).iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, folder in package_dir.items():
        if name != "keras_focal":
            (LAYOUT / name.replace(".", "/")).symlink_to(ROOT / folder)
    return LAYOUT


def on_startup(command, dirty) -> None:
    installed_layout()
