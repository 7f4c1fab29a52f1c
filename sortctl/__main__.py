"""`python -m sortctl`: the same as the `sortctl` script."""

import sys

from sortctl.cli import main

sys.exit(main())
