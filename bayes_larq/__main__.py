"""`python -m bayes_larq`: the `bayes-larq` command line."""

import sys

from bayes_larq.app.cli import main

sys.exit(main())
