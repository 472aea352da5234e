"""The process group of a data-parallel run: parsing the Keras variables, private folders."""

import os
import subprocess
import sys
import tempfile

import pytest

from keras_focal.training import processes

pytestmark = pytest.mark.backend_agnostic


def test_variables_give_the_group():
    group = processes.from_environment({
        processes.NUM_PROCESSES: "2", processes.PROCESS_ID: "1", processes.ADDRESSES: "127.0.0.1:1234",
    })
    assert (group.num_processes, group.process_id, group.coordinator, group.is_chief) == (2, 1, "127.0.0.1:1234", False)
    assert processes.from_environment({}) == processes.ProcessGroup()


def test_private_copies_of_killed_processes_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    abandoned = tmp_path / f"keras-focal-process1-pid{dead}-abc"
    living = tmp_path / f"keras-focal-process1-pid{os.getppid()}-def"
    for folder in (abandoned, living):
        folder.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text("{}")
    group = processes.ProcessGroup(num_processes=2, process_id=1, coordinator="127.0.0.1:1")
    with processes.private_folders(group, str(run), None) as (copy, init_dir):
        assert init_dir is None and os.listdir(copy) == ["state.json"]
        assert not abandoned.exists() and living.exists()
        assert os.path.basename(os.path.dirname(copy)).startswith(f"keras-focal-process1-pid{os.getpid()}-")
    assert not os.path.exists(copy)
    with processes.private_folders(processes.ProcessGroup(), str(run)) as (same,):
        assert same == str(run)
