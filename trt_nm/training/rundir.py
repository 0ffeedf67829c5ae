"""The run directory: checked for writability first, locked while a run writes into it, and
cleared of the temporary files an interrupted atomic write left behind.

* :func:`prepare_run_dir` is what :meth:`trt_nm.training.trainer.Trainer.fit` calls before
  the first epoch: the directory must be writable (:func:`trt_nm.atomic.check_writable`: a
  path under a file, ``/proc`` or a read-only mount is a one-line error before any training),
  it is created, locked (:class:`RunLock`) and stale temporary files are removed.
* :class:`RunLock`: an exclusive ``flock`` on ``RUN/.trt_nm.lock``. Two trainings into one
  directory would interleave ``last.pt``, ``best.pt`` and ``log.csv`` from different runs; the
  second is refused with one line instead. The kernel releases a ``flock`` when its process
  ends, however it ends (SIGKILL included), so a crashed run never blocks the next one; the lock
  file itself stays (removing it would race with a run that just opened it).
* :func:`remove_stale_temp_files`: :mod:`trt_nm.atomic` writes ``.NAME.XXXXXXXX.tmp`` beside
  ``NAME`` and renames it; a SIGKILL between the two leaves the temp file. Only files of that
  pattern for the names a run writes are removed, and only while the lock is held (so no other
  run can be writing them).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from trt_nm.atomic import check_writable
from trt_nm.errors import ConfigError

#: the lock file of a run directory
LOCK_NAME = ".trt_nm.lock"
#: the files a training run writes atomically (the temp files of other writers are left alone)
RUN_FILES = ("last.pt", "best.pt", "log.csv", "fisher.json", "fisher.png")
#: tempfile.mkstemp(prefix=".NAME.", suffix=".tmp") names: 8 characters of [a-z0-9_]
_TEMP = re.compile(r"\.(" + "|".join(re.escape(n) for n in RUN_FILES) + r")\.[A-Za-z0-9_]{8}\.tmp")


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``run_dir/.trt_nm.lock`` (see module docstring).

    ``acquire()`` raises a one-line :class:`ConfigError` when another process holds it;
    ``release()`` (or leaving the ``with`` block) lets it go. The file records the holder's pid,
    for the message only: the lock is the ``flock``, never the file's existence.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot lock run directory {self.run_dir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            except OSError:  # pragma: no cover
                holder = ""
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise ConfigError(
                f"run directory {self.run_dir} is in use by another training{who}; "
                "wait for it to finish or choose another --out"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # pragma: no cover - the pid is informative only
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the temp files interrupted atomic writes of :data:`RUN_FILES` left in ``run_dir``
    (call it only while holding the run's :class:`RunLock`); returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(run_dir))
    except OSError:
        return removed
    for e in entries:
        if _TEMP.fullmatch(e.name) and e.is_file(follow_symlinks=False):
            try:
                os.unlink(e.path)
            except OSError:
                continue
            removed.append(Path(e.path))
    return removed


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    """Fail before any work when ``run_dir`` cannot hold a run (a file, under a file, not
    writable); one-line :class:`ConfigError`."""
    return check_writable(run_dir, directory=True, what="output")


def prepare_run_dir(run_dir: str | os.PathLike) -> tuple[RunLock, list[Path]]:
    """Check, create and lock ``run_dir``, then remove stale temp files; returns the held lock
    and the removed files."""
    out = check_run_dir(run_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {out}: {exc.strerror or exc}") from None
    lock = RunLock(out).acquire()
    return lock, remove_stale_temp_files(out)


__all__ = ["LOCK_NAME", "RUN_FILES", "RunLock", "check_run_dir", "prepare_run_dir", "remove_stale_temp_files"]
