"""``python -m edlm_ext``: see :mod:`edlm_ext.cli`."""
import sys

from .cli import main

sys.exit(main())
