"""``python -m benchmarks [--quick] [--size large] [--scaling] [--compile-cache]``."""

import sys

from benchmarks.suite import main

sys.exit(main())
