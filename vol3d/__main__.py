"""``python -m vol3d`` runs the command line (also under ``torchrun -m vol3d``)."""

import sys

from .cli import main

sys.exit(main())
