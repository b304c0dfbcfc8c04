"""``python -m ganforge.compare``: the same as ``ganforge-compare``."""

import sys

from ganforge.compare.cli import main

sys.exit(main())
