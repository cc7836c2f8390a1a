"""`python -m anygpt ...` is the `anygpt` command (anygpt.cli)."""

import sys

from anygpt.cli import main

sys.exit(main())
