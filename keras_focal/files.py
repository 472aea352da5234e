"""Safe files: atomic writes, a lock on an output folder, and the clean-up of what a kill leaves.

Every file the package writes (prepared slices aside, which `data_prep`
commits case by case) goes through this module, so that a reader never sees
a half-written file and a killed run leaves nothing that a later run could
mistake for a result:

- `write_text_atomically`, `write_json_atomically`, `save_figure_atomically`,
  `save_png_atomically`, `save_model_atomically` and `replacing` write beside the target under
  a name marked `.tmp-<pid>` and rename it into place.
- `remove_temporaries` deletes such files left by a killed process.
- `FolderLock` keeps two processes from working in one output folder.

Nothing here imports TensorFlow, Keras or JAX.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from collections.abc import Iterable, Iterator
from typing import Any

from keras_focal.types import ArrayLike, PathLike

LOCK_NAME = ".lock"
OWNER_NAME = ".lock-owner.json"
# What `temporary_path` names temporary files (`.tmp-*`: older versions' names).
_TEMPORARY = re.compile(r"(^\.tmp-)|(\.tmp-\d+(\.[A-Za-z0-9]+)+$)")


def check_output_folder(out: PathLike, what: str = "the output folder") -> None:
    """Raises ValueError unless `out` is a folder this process can write into, or can be made one.

    Creates nothing: a command refused for another reason leaves no folder.
    """
    out = os.path.abspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"{what} '{out}' is an existing file, not a folder: choose a folder.")
    existing = out
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"cannot create {what} '{out}': '{existing}' is a file.")
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = "it is on a read-only file system" if _read_only(existing) else "permission denied"
        raise ValueError(f"cannot write into '{existing}' (for {what} '{out}'): {reason}.")


def check_not_inside(out: PathLike, sources: Iterable[PathLike | None]) -> None:
    """Raises ValueError when the folder `out` is, or lies inside, one of the input folders `sources`.

    A run writing into its own input would read what it wrote as new input
    on the next run.
    """
    target = os.path.realpath(out)
    for source in sources:
        if source is None:
            continue
        folder = os.path.realpath(source)
        if target == folder or target.startswith(folder.rstrip(os.sep) + os.sep):
            raise ValueError(
                f"the output '{out}' lies inside the input '{source}': a later run would read the files it writes "
                "as input. Choose an output folder outside the input."
            )


def _read_only(path: str):
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):
        return False


class FolderBusyError(RuntimeError):
    """Another process holds the folder's lock."""


def temporary_path(path: PathLike) -> str:
    """A name beside `path` for its content before the rename: `name.tmp-<pid>.ext`."""
    directory, name = os.path.split(path)
    stem, dot, extension = name.partition(".")
    return os.path.join(directory, f"{stem}.tmp-{os.getpid()}{dot}{extension}")


@contextlib.contextmanager
def replacing(path: PathLike) -> Iterator[str]:
    """Yields a temporary path to write; renames it to `path` on success, removes it on failure."""
    temporary = temporary_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def write_text_atomically(path: PathLike, text: str) -> None:
    """Writes `text` to a temporary file beside `path`, then renames it into place."""
    with replacing(path) as temporary:
        with open(temporary, "w", newline="") as stream:
            stream.write(text)


def write_json_atomically(path: PathLike, data: Any) -> None:
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


def save_figure_atomically(figure: Any, path: PathLike, dpi: int = 120, **savefig_options: Any) -> None:
    """Saves a Matplotlib figure as PNG through a temporary file, then closes it.

    `savefig_options` go to `Figure.savefig` (e.g. `bbox_inches="tight"`).
    """
    import matplotlib.pyplot as plt

    try:
        with replacing(path) as temporary:
            figure.savefig(temporary, dpi=dpi, format="png", **savefig_options)
    finally:
        plt.close(figure)


def save_png_atomically(array: ArrayLike, path: PathLike) -> None:
    """Writes a uint8 array (H, W) or (H, W, 3) as PNG through a temporary file."""
    from PIL import Image

    with replacing(path) as temporary:
        Image.fromarray(array).save(temporary, format="PNG")


def save_model_atomically(model: Any, path: PathLike) -> None:
    """`model.save(path)` through a temporary `.keras` file."""
    with replacing(path) as temporary:
        model.save(temporary)


def remove_temporaries(folder: PathLike) -> list[str]:
    """Deletes the temporary files (`.tmp-*`, `*.tmp-<pid>.*`) a killed process left in `folder`.

    Call it only while holding the folder's lock: then no live process is
    writing them. Returns the names removed.
    """
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if _TEMPORARY.search(name) and os.path.isfile(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(name)
    return removed


class FolderLock:
    """An exclusive lock on an output folder (a `filelock` on `FOLDER/.lock`).

    The holder's PID and host are kept beside the lock, so that a second
    process can say who holds it. The operating system releases the lock
    when its holder dies, however it dies: a kill never leaves a folder
    locked.

    Args:
        folder: the folder (created if needed).
        timeout: seconds to wait for the lock; 0 refuses at once.

    Raises:
        FolderBusyError: on entry, when another process still holds it
            after `timeout` seconds.
    """

    def __init__(self, folder: PathLike, timeout: float = 0, name: str = LOCK_NAME) -> None:
        import filelock

        self.folder = str(folder)
        self.timeout = timeout
        self._owner = name + "-owner.json"
        self._lock = filelock.FileLock(os.path.join(self.folder, name), timeout=timeout)

    def holder(self) -> dict | None:
        """`{"pid", "host"}` of the process that last took the lock, or None."""
        try:
            with open(os.path.join(self.folder, self._owner)) as stream:
                return json.load(stream)
        except (OSError, ValueError):
            return None

    def __enter__(self):
        import filelock

        os.makedirs(self.folder, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            holder = self.holder() or {}
            who = f"process {holder.get('pid', '?')} on {holder.get('host', '?')}"
            waited = f" after waiting {self.timeout} s" if self.timeout else ""
            raise FolderBusyError(
                f"'{self.folder}' is in use by {who}{waited}: wait for it to finish, or use another folder."
            ) from None
        write_json_atomically(os.path.join(self.folder, self._owner), {"pid": os.getpid(), "host": socket.gethostname()})
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(self.folder, self._owner))
        self._lock.release()


@contextlib.contextmanager
def publishing_folder(out: PathLike) -> Iterator[str]:
    """Yields a fresh temporary folder beside `out`; on success it replaces `out` as a whole.

    Readers of `out` see the previous complete set of files or the new one,
    never a mix; on failure (or a kill) `out` is untouched. Hold a lock on
    `out`'s parent (`FolderLock(parent, name=...)`) while using it: folders a
    killed writer left (`out.tmp-<pid>`, `out.old-<pid>`) are removed here.
    """
    import shutil

    out = os.path.abspath(out)
    parent, name = os.path.split(out)
    os.makedirs(parent, exist_ok=True)
    leftover = re.compile(re.escape(name) + r"\.(tmp|old)-\d+$")
    for entry in os.listdir(parent):
        if leftover.match(entry):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    temporary = os.path.join(parent, f"{name}.tmp-{os.getpid()}")
    os.makedirs(temporary)
    try:
        yield temporary
        old = os.path.join(parent, f"{name}.old-{os.getpid()}")
        if os.path.exists(out):
            os.replace(out, old)
        os.replace(temporary, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
