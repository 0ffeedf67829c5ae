"""Dataset errors (both :class:`~trt_nm.errors.TrtNmError`: one line on stderr, exit code 2)."""

from __future__ import annotations

from trt_nm.errors import TrtNmError


class MissingDatasetError(TrtNmError):
    """The dataset's files are not where its reader expects them (the message says where)."""


class DatasetFileError(TrtNmError):
    """A dataset file is empty, truncated or corrupt (the message names the path)."""
