"""``python -m drct``: the ``drct`` command (the same as the installed entry point and ``python -m drct.cli``).

Example:
    $ python -m drct --version
    $ python -m drct simulate shepp_logan_2d -o out/shepp_logan_2d
"""

import sys

from .cli import main

sys.exit(main())
