"""``python -m seek_backup``: see :mod:`seek_backup.cli`."""

import sys

from .cli import main

sys.exit(main())
