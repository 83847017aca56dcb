"""``python -m parley``: the ``parley`` command."""

import sys

from parley.api.cli import main

sys.exit(main())
