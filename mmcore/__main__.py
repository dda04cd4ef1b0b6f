"""`python -m mmcore` runs the `mmcore` command."""

import sys

from mmcore.cli import main

sys.exit(main())
