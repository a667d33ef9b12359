"""``python -m brats`` runs the command-line interface."""

import sys

from brats.cli import main

sys.exit(main())
