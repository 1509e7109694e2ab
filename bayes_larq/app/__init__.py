"""The `bayes-larq` application, built on the core library.

* `data`: dataset specs and input pipelines (Fashion-MNIST IDX files, TFDS).
* `runs`: the job: train / resume / evaluate / convert / benchmark / demo on run
  directories, each step returning a typed result.
* `report`: report.json, report.md and the plots of a run.
* `cli`: the `bayes-larq` command line (argument parsing and printing only).

The core (`bayes_larq.losses`, `quantizers`, `training`, `callbacks`, `mixture`,
`profile`, `convert`, `defaults`) never imports this package.
"""

from bayes_larq.app import cli, data, report, runs

__all__ = ["cli", "data", "report", "runs"]
