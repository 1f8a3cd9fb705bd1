"""Command line: python -m tests.vm build|up|down|status [options] (see --help)."""

from __future__ import annotations

import sys

from tests.vm.cli import main

sys.exit(main())
