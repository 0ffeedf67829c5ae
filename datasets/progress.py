"""Progress bars for slow dataset preparation (as training shows them).

``progress=None`` lets tqdm decide: a bar on stderr when stderr is a terminal, nothing when
it is a file or a pipe (logs stay clean); ``True`` always shows one, ``False`` never.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str, progress: bool | None = None, unit: str = "it") -> Any:
    """A tqdm bar of ``total`` steps on stderr (``progress`` as in the module docstring).

    Use as a context manager and call ``update(n)``; the bar disappears when done.
    """
    disable = None if progress is None else not progress
    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=disable, file=sys.stderr, dynamic_ncols=True)
