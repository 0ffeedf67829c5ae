"""Error types. Every error a user can cause derives from :class:`TrtNmError`.

The CLI turns a ``TrtNmError`` into one line on stderr and exit code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class TrtNmError(Exception):
    """A problem with the user's input, files or environment (CLI exit code 2)."""

    exit_code: int = 2


class ConfigError(TrtNmError, ValueError):
    """An invalid name, value or combination of options."""


class MissingDependencyError(TrtNmError, ImportError):
    """An optional library is not installed; the message names the extra to install."""


class CheckpointError(TrtNmError):
    """A checkpoint file is missing, truncated, corrupt or not a trt_nm checkpoint."""


class NirError(TrtNmError):
    """A NIR file or graph that cannot be read, is invalid, or uses an unsupported feature
    (also what the simulator raises for a graph it cannot run)."""


class TrainingDiverged(TrtNmError):
    """The loss became NaN or infinite; the message names the epoch and step."""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> ConfigError:
    """Build the standard error for an unknown registry name."""
    plural = kind + ("es" if kind.endswith(("s", "x")) else "s")
    return ConfigError(f"unknown {kind} {name!r}; valid {plural}: {', '.join(sorted(valid))}")


def require(module: str, extra: str):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{module} is not installed; install it with: pip install 'trt-nm[{extra}]'"
        ) from exc
