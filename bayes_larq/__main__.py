"""`python -m bayes_larq`: the `bayes-larq` command line."""

import sys

from bayes_larq.cli import main

sys.exit(main())
