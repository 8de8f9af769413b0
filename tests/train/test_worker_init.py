"""A DataLoader worker dies with the process that started it (``kill -9`` included)."""

from __future__ import annotations

import os
import select
import signal
import sys
import time

import pytest

from eqv2.train.worker_init import die_with_parent


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_dies_when_its_parent_is_killed():
    read, write = os.pipe()
    parent = os.fork()
    if parent == 0:  # the "training process": starts a worker, then is killed
        worker = os.fork()
        if worker == 0:
            os.close(read)
            die_with_parent(os.getppid())
            os.write(write, f"{os.getpid()}\n".encode())
            time.sleep(60)  # an orphan that does not die holds the pipe open this long
            os._exit(0)
        os.close(write)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    os.close(write)
    os.waitpid(parent, 0)
    worker_pid = None
    deadline = time.monotonic() + 20
    data = b""
    try:
        while time.monotonic() < deadline:  # EOF once every holder of the pipe is gone
            ready, _, _ = select.select([read], [], [], 0.2)
            if ready:
                chunk = os.read(read, 64)
                if not chunk:
                    break
                data += chunk
        else:
            pytest.fail("the worker outlived its killed parent by 20 s")
    finally:
        os.close(read)
        if data.strip():
            worker_pid = int(data.split()[0])
        if worker_pid is not None:
            try:
                os.kill(worker_pid, signal.SIGKILL)  # only if the test failed
            except ProcessLookupError:
                pass
    assert worker_pid is not None  # it started and asked to die with its parent
