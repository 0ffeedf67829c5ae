"""Vendor toolchains in cached throw-away venvs, and the runner scripts they execute.

``--verify`` proves a deployment with the vendor's own software (XyloSim, Lava's fixed-point
models, sinabs' discretized DYNAP-CNN network). Those packages pin old Pythons, old numpy or
a bootstrapper that needs a network, so they never enter trt_nm's own environment: each chip's
:class:`~trt_nm.chip.base.VendorRecipe` is built once into
``$TRT_NM_VENDOR_DIR/<chip>-<recipe hash>`` (default ``~/.cache/trt_nm/vendor``) and reused
while the recipe is unchanged. The venv then runs ``trt_nm/chip/runners/<chip>_runner.py``
as a separate process; results come back as an ``.npz`` file read with ``allow_pickle=False``.

Errors (a toolchain that cannot be built, a runner that fails) are one-line
:class:`VendorError` (exit code 2) naming the package and the log file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from trt_nm.chip.base import Chip, VendorRecipe
from trt_nm.errors import TrtNmError

#: where the runner scripts live (package data)
RUNNERS = Path(__file__).resolve().parent / "runners"
#: seconds one pip step or one runner call may take
BUILD_TIMEOUT_S = 1800
RUN_TIMEOUT_S = 3600


class VendorError(TrtNmError):
    """A vendor toolchain could not be built or its runner failed (exit code 2)."""


def vendor_root() -> Path:
    """The cache folder of vendor venvs (``$TRT_NM_VENDOR_DIR`` or ``~/.cache/trt_nm/vendor``)."""
    env = os.environ.get("TRT_NM_VENDOR_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "trt_nm" / "vendor"


def recipe_key(recipe: VendorRecipe) -> str:
    """12 hex digits that change whenever the recipe (or its runner's name) changes."""
    text = json.dumps(asdict(recipe), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def venv_dir(chip: Chip) -> Path:
    """Where ``chip``'s vendor venv is (or will be) built."""
    return vendor_root() / f"{chip.name}-{recipe_key(chip.vendor)}"


def _interpreter(recipe: VendorRecipe) -> str:
    if recipe.python.startswith("pyenv:"):
        version = recipe.python.split(":", 1)[1]
        root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
        exe = Path(root) / "versions" / version / "bin" / "python"
        if not exe.is_file():
            raise VendorError(f"{recipe.packages} needs Python {version} from pyenv; not found at {exe}")
        return str(exe)
    exe = shutil.which(recipe.python)
    if exe is None:
        raise VendorError(f"{recipe.packages} needs the interpreter {recipe.python!r}; not on PATH")
    return exe


def _run(cmd: list[str], log: Path, what: str, packages: str) -> None:
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise VendorError(f"could not build {packages}: {what} took over {BUILD_TIMEOUT_S} s; log: {log}") from None
    if proc.returncode != 0:
        raise VendorError(f"could not build {packages}: {what} failed (exit {proc.returncode}); log: {log}")


def vendor_python(chip: Chip, *, build: bool = True, quiet: bool = False) -> Path:
    """The interpreter of ``chip``'s vendor venv, building the venv first if it is missing.

    The build runs in a temporary folder beside the cache entry and is renamed into place only
    when every step succeeded, under a lock (two processes never build the same venv twice).
    ``build=False`` raises VendorError instead of building.
    """
    final = venv_dir(chip)
    py = final / "bin" / "python"
    if (final / ".ready").is_file():
        return py
    if not build:
        raise VendorError(f"the {chip.name} vendor toolchain ({chip.vendor.packages}) is not built: {final}")
    root = vendor_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"{chip.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".ready").is_file():
            return py
        recipe = chip.vendor
        work = Path(tempfile.mkdtemp(prefix=f".{chip.name}-", dir=root))
        log = root / f"{chip.name}-{recipe_key(recipe)}.log"
        log.write_text("")
        if not quiet:
            sys.stderr.write(f"trt-nm: building the {chip.name} vendor toolchain ({recipe.packages}) "
                             f"once in {final} (log: {log})\n")
        try:
            _run([_interpreter(recipe), "-m", "venv", str(work)], log, "creating the venv", recipe.packages)
            wpy = str(work / "bin" / "python")
            constraints = work / "constraints.txt"
            constraints.write_text(f"torch=={recipe.torch}\n" if recipe.torch else "")
            for args in recipe.pip:
                _run([wpy, "-m", "pip", "install", "--quiet", "-c", str(constraints), *args], log,
                     f"pip install {' '.join(args)}", recipe.packages)
            if recipe.post:
                post = work / "post_install.py"
                post.write_text(recipe.post)
                _run([wpy, str(post)], log, "the post-install step", recipe.packages)
            (work / ".ready").write_text(recipe_key(recipe) + "\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(work, final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        # venvs hard-code their own path in scripts; python -m and the interpreter still work
        # after the rename because bin/python is a symlink to the base interpreter
    return py


def runner_path(chip: Chip) -> Path:
    """The runner script of ``chip`` (a file name in :data:`RUNNERS`, or an absolute path)."""
    p = Path(chip.vendor.runner)
    return p if p.is_absolute() else RUNNERS / p


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no message)"


def run_runner(chip: Chip, *args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run ``chip``'s runner in its vendor venv with ``args``; returns the completed process."""
    py = vendor_python(chip)
    try:
        return subprocess.run([str(py), str(runner_path(chip)), *args], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VendorError(f"{chip.name} vendor runner took over {timeout:.0f} s") from None


def vendor_records(chip: Chip, deploy_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Run the vendor simulator on a deployment: ``{"out": ..., "layer:NAME": ..., "versions": ...}``."""
    with tempfile.TemporaryDirectory(prefix="trt_nm-verify-") as tmp:
        result = Path(tmp) / "vendor.npz"
        proc = run_runner(chip, str(deploy_dir), str(result))
        if proc.returncode != 0 or not result.is_file():
            raise VendorError(f"{chip.name} vendor simulator failed: {_last_line(proc.stderr or proc.stdout)}")
        try:
            with np.load(result, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise VendorError(f"{chip.name} vendor runner wrote an unreadable result: {exc}") from None


def vendor_map(chip: Chip, nir_file: str | os.PathLike) -> tuple[bool, str]:
    """Ask the vendor mapper about a NIR file: ``(accepted, message)``."""
    proc = run_runner(chip, "map", str(nir_file))
    if proc.returncode == 0:
        return True, _last_line(proc.stdout) if proc.stdout.strip() else "accepted"
    if proc.returncode == 3:
        return False, _last_line(proc.stdout + "\n" + proc.stderr)
    raise VendorError(f"{chip.name} vendor mapper failed: {_last_line(proc.stderr or proc.stdout)}")
