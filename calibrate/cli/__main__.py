"""``python -m calibrate.cli``: the ``calibrate`` program without its console script."""

import sys

from calibrate.cli import main

sys.exit(main())
