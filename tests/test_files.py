"""Atomic writes, the folder lock and the clean-up of temporary files."""

import json
import os
import subprocess
import sys

import pytest

from keras_focal import files

pytestmark = pytest.mark.backend_agnostic


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "results.csv"
    files.write_text_atomically(str(target), "old\n")

    class Broken:
        def __str__(self):
            raise OSError(28, "No space left on device")

    with pytest.raises(TypeError):
        files.write_text_atomically(str(target), Broken())
    with pytest.raises(OSError, match="No space left"):
        with files.replacing(str(tmp_path / "best.keras")) as temporary:
            open(temporary, "w").write("half")
            raise OSError(28, "No space left on device")
    assert target.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["results.csv"]


def test_temporary_names_are_recognised_and_only_they_are_removed(tmp_path):
    keep = ["best.keras", "history.csv", "state-epoch0001.weights.h5", "notes.tmp.txt", "tmp-1.png"]
    stale = [
        os.path.basename(files.temporary_path(str(tmp_path / "best.keras"))),
        "last.tmp-4242.keras",
        "unet-32x32x1-c2-ab12cd34-fold0-seed0.tmp-77.weights.h5",
        "results.tmp-9.png",
        ".tmp-k2j4h5",
    ]
    for name in keep + stale:
        (tmp_path / name).write_text("x")
    assert sorted(files.remove_temporaries(str(tmp_path))) == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == sorted(keep)


HOLD_LOCK = """
import sys, time
from keras_focal.files import FolderLock
with FolderLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(files.FolderBusyError, match=rf"'{tmp_path}' is in use by process {holder.pid} on "):
            with files.FolderLock(str(tmp_path)):
                pass
        assert json.load(open(tmp_path / files.OWNER_NAME))["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
    # The operating system released the killed holder's lock.
    with files.FolderLock(str(tmp_path)) as lock:
        assert lock.holder()["pid"] == os.getpid()
    assert not (tmp_path / files.OWNER_NAME).exists()
