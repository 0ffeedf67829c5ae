"""``python -m trt_nm`` == ``trt-nm``."""

import sys

from trt_nm.cli.main import main

sys.exit(main())
