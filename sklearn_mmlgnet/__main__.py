"""``python -m sklearn_mmlgnet`` is the ``mmlgnet`` command."""

import sys

from .cli import main

sys.exit(main())
