"""`python -m ganforge ...`: the same command as `ganforge ...`."""
import sys

from .cli import main

sys.exit(main())
