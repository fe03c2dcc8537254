"""The atomic writer: kill -9 leaves nothing behind for long, and files honour the umask."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from irlm_env import fileio
from irlm_env.fileio import atomic_write_bytes, remove_stale_temporaries

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from irlm_env.fileio import atomic_write_bytes

    target, size = Path(sys.argv[1]), int(sys.argv[2])
    data = b"x" * size
    while True:
        atomic_write_bytes(target, data)
    """
)


def _temporaries(folder: Path) -> set[Path]:
    return set(folder.glob(".final.irlm.*.tmp"))


def test_temporaries_of_writers_killed_mid_write_are_removed_by_the_next_save(tmp_path: Path) -> None:
    """A real kill -9 loop: each kill that lands mid-write leaves a full-size temporary file."""
    target = tmp_path / "final.irlm"
    left_behind: set[Path] = set()
    for _ in range(40):
        before = _temporaries(tmp_path)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(16 * 2**20)])
        deadline = time.monotonic() + 30
        while not (_temporaries(tmp_path) - before) and time.monotonic() < deadline:  # writing now
            time.sleep(0.001)
        writer.send_signal(signal.SIGKILL)
        writer.wait()  # reaped: its process id no longer exists
        left_behind.update(_temporaries(tmp_path) - before)
        if len(left_behind) >= 3:
            break
    assert len(left_behind) >= 3, "no kill landed mid-write; the test could not see the fault"
    atomic_write_bytes(target, b"final")
    assert _temporaries(tmp_path) == set() and target.read_bytes() == b"final"


def test_temporaries_of_live_writers_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "model.irlm"
    mine = tmp_path / f".model.irlm.{os.getpid()}-{fileio._HOST}.0a1b2c3d.tmp"
    other_host_fresh = tmp_path / ".model.irlm.1-00000000.0a1b2c3d.tmp"
    other_host_old = tmp_path / ".model.irlm.1-00000000.deadbeef.tmp"
    gone = tmp_path / f".model.irlm.{_dead_pid()}-{fileio._HOST}.0a1b2c3d.tmp"
    unrelated = tmp_path / ".other.irlm.1-00000000.0a1b2c3d.tmp"
    for path in (mine, other_host_fresh, other_host_old, gone, unrelated):
        path.write_bytes(b"partial")
    old = time.time() - fileio.FOREIGN_STALE_SECONDS - 60
    os.utime(other_host_old, (old, old))
    os.utime(unrelated, (old, old))
    assert sorted(remove_stale_temporaries(target)) == sorted([other_host_old, gone])
    assert mine.exists() and other_host_fresh.exists() and unrelated.exists()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_honour_the_umask(tmp_path: Path, umask: None, mask: int, mode: int) -> None:
    os.umask(mask)
    target = tmp_path / "summary.json"
    atomic_write_bytes(target, b"{}")
    assert target.stat().st_mode & 0o777 == mode
    atomic_write_bytes(target, b"{}")  # replacing keeps to the umask too
    assert target.stat().st_mode & 0o777 == mode
