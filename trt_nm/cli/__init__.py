"""The ``trt-nm`` command line: :func:`main` in :mod:`.main`, one module per subcommand."""

from trt_nm.cli.main import main

__all__ = ["main"]
