"""`python -m drlrec.cli ...` (torchrun uses it for `drlrec train --distributed`)."""

import sys

from drlrec.cli import main

sys.exit(main())
