"""The `bayes-larq` application, built on the core library.

In the order the job runs (each module imports only modules above it in this list):

* input data: `errors` (the job's errors and their hints), `idx`, `tfds_source`,
  `fashion_mnist`, `preprocess`, `data` (dataset specs and the one input pipeline);
* a run: `config` (`RunConfig`), `interrupts`, `peers` (waiting for the other workers of
  a cluster), `distribute`, `rundir` (the run directory and its files), `report`,
  `model`, `teacher` (distillation's teacher), `staged` (two-step training),
  `evaluation`, `train`, `deploy`;
* `runs`: the job's public names gathered for Python users (`runs.train`, ...);
* the command line: `messages` (what it prints), `arguments` (argument types), `cli`
  (argument parsing).

The core (`bayes_larq.losses`, `quantizers`, `training`, `callbacks`, `mixture`,
`profile`, `convert`, `defaults`) never imports this package.
"""

from bayes_larq.app import cli, data, report, runs

__all__ = ["cli", "data", "report", "runs"]
