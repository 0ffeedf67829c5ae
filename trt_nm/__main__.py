"""``python -m trt_nm`` == ``trt-nm``."""

import sys

from .cli import main

sys.exit(main())
