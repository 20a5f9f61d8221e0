"""``python -m biosim.cli``: the ``biosim`` command."""

import sys

from . import main

sys.exit(main())
