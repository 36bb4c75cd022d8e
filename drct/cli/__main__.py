"""``python -m drct.cli``: the ``drct`` command without the installed entry point."""

import sys

from . import main

sys.exit(main())
