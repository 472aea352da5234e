"""The process group of a multi-process `data-parallel` run.

The group comes from Keras's own environment variables (the convention of
`keras.distribution.initialize`): `KERAS_DISTRIBUTION_JOB_ADDRESSES` (the
coordinator's `host:port`, or every process's address, the first being the
coordinator), `KERAS_DISTRIBUTION_NUM_PROCESSES` and
`KERAS_DISTRIBUTION_PROCESS_ID`. One process is one host (or one GPU); on CPU
the processes talk through gloo collectives, so the group runs on one machine.

Every process runs the same trainer: the same data decisions, the same
collective steps (saving a model is one). Process 0 writes into the run
folder; every other process works on a private copy of it in a temporary
folder, removed at the end, so that it resumes from the same state and
leaves nothing in `--out`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping

ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
NUM_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"
# Seconds a process waits for the coordinator and its peers before giving up.
COORDINATOR_TIMEOUT = "KERAS_FOCAL_COORDINATOR_TIMEOUT"


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    num_processes: int = 1
    process_id: int = 0
    coordinator: str | None = None

    @property
    def is_chief(self) -> bool:
        return self.process_id == 0


def _integer(name: str, value):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer. Received: {name}={value!r}") from None


def from_environment(environ: Mapping[str, str] = os.environ) -> ProcessGroup:
    """The group the `KERAS_DISTRIBUTION_*` variables describe (one process when unset).

    Raises:
        ValueError: the variables are incomplete or inconsistent.
    """
    count = environ.get(NUM_PROCESSES)
    if count in (None, ""):
        return ProcessGroup()
    count = _integer(NUM_PROCESSES, count)
    if count < 1:
        raise ValueError(f"{NUM_PROCESSES} must be >= 1. Received: {count}")
    if count == 1:
        return ProcessGroup()
    missing = [name for name in (ADDRESSES, PROCESS_ID) if environ.get(name) in (None, "")]
    if missing:
        raise ValueError(
            f"{NUM_PROCESSES}={count} needs {' and '.join(missing)} too (the coordinator's "
            "host:port and this process's index 0..N-1)."
        )
    process_id = _integer(PROCESS_ID, environ[PROCESS_ID])
    if not 0 <= process_id < count:
        raise ValueError(f"{PROCESS_ID}={process_id} is out of range for {NUM_PROCESSES}={count}: allowed 0..{count - 1}.")
    addresses = [a.strip() for a in environ[ADDRESSES].split(",") if a.strip()]
    if len(addresses) > 1 and len(addresses) != count:
        raise ValueError(
            f"{ADDRESSES} lists {len(addresses)} addresses but {NUM_PROCESSES}={count}: "
            "give the coordinator alone or one address per process."
        )
    if ":" not in addresses[0]:
        raise ValueError(f"{ADDRESSES} must start with the coordinator's host:port. Received: {addresses[0]!r}")
    return ProcessGroup(count, process_id, addresses[0])


def start(group: ProcessGroup, environ: Mapping[str, str] = os.environ) -> None:
    """Joins the JAX process group (a no-op for one process).

    Must run before anything computes with JAX.

    Raises:
        RuntimeError: the coordinator did not answer in time (processes other
            than 0 wait for its port first, because JAX ends the process
            outright when its own deadline passes); the message names the
            address. Process 0 hosts the coordinator: if its peers never
            come, JAX's deadline (the same timeout) ends it.
    """
    if group.num_processes == 1:
        return
    import jax

    timeout = _integer(COORDINATOR_TIMEOUT, environ.get(COORDINATOR_TIMEOUT, "120"))
    if not group.is_chief:
        _wait_for_coordinator(group, timeout)
    # Collectives between CPU devices go through gloo (GPUs use NCCL regardless).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=group.coordinator,
            num_processes=group.num_processes,
            process_id=group.process_id,
            initialization_timeout=timeout,
        )
    except Exception as error:  # JAX raises several types for an absent coordinator
        raise RuntimeError(
            f"process {group.process_id} of {group.num_processes} could not join the group at "
            f"{group.coordinator} within {timeout} s ({type(error).__name__}: {str(error)[:200]}). "
            f"Start every process with the same {ADDRESSES}, {NUM_PROCESSES} and a distinct {PROCESS_ID}."
        ) from None


def _wait_for_coordinator(group, timeout):
    host, _, port = group.coordinator.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"process {group.process_id} of {group.num_processes} could not join the group at "
                    f"{group.coordinator} within {timeout} s: nothing answers there. Start process 0 "
                    f"(the coordinator) with the same {ADDRESSES}."
                ) from None
            time.sleep(0.5)


PRIVATE_PREFIX = "keras-focal-process"


def _remove_abandoned_copies() -> None:
    """Removes the private copies of processes that died without cleaning up (kill -9)."""
    pattern = re.compile(rf"^{PRIVATE_PREFIX}\d+-pid(\d+)-")
    for name in os.listdir(tempfile.gettempdir()):
        match = pattern.match(name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(os.path.join(tempfile.gettempdir(), name), ignore_errors=True)


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


@contextlib.contextmanager
def private_folders(group: ProcessGroup, *folders: str | None) -> Iterator[tuple[str | None, ...]]:
    """Yields `folders` for process 0, and private temporary copies for the others.

    A copy is named after its process's PID, so that a later process removes
    the copies of processes killed before they could.
    """
    if group.is_chief:
        yield folders
        return
    _remove_abandoned_copies()
    root = tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{group.process_id}-pid{os.getpid()}-")
    try:
        copies: list[str | None] = []
        for index, folder in enumerate(folders):
            if folder is None:
                copies.append(None)
                continue
            copy = os.path.join(root, str(index))
            if os.path.isdir(folder):
                shutil.copytree(folder, copy)
            copies.append(copy)
        yield tuple(copies)
    finally:
        shutil.rmtree(root, ignore_errors=True)
