"""The job on run directories: train, resume, evaluate, convert, benchmark, demo.

Every `bayes-larq` command, as a library (`bayes_larq.app.cli` only parses arguments and
prints); each step returns a dataclass (`Trained`, `Evaluation`, `Conversion`,
`Benchmark`, `Demo`):

```python
from bayes_larq.app import runs

config = runs.RunConfig(model="small_cnn", dataset="fashion_mnist", epochs=5)
runs.train(config, "runs/first")          # Ctrl-C -> runs.RunInterrupted; resume with
runs.resume("runs/first")                 # ... the same weights as an uninterrupted run
runs.evaluate(runs.load_classifier("runs/first"), "fashion_mnist")   # an Evaluation
runs.convert("runs/first")                # LCE .tflite, checked against Keras
runs.benchmark("runs/first")              # latency beside the float twin
```

This module only gathers the job's public names; each lives in the module of its
concern, in the order the job runs:

* `config`: `RunConfig`, the settings of a run, with real defaults;
* `errors`: `RunError`, `JobFailed`, `RunInterrupted`, `TrainingDiverged` and their hints;
* `interrupts`: Ctrl-C and SIGTERM kept pending until training can stop;
* `distribute`: the `tf.distribute` strategy and the chief;
* `rundir`: `RunDirectory` (every file of a run, see there), `RunState`, checkpoints;
* `model`: the seeded classifier, `BONN`, the optimizer;
* `evaluation`: `load_classifier`, `evaluate`;
* `teacher`: the teacher of a distilling run (a float run, or the float twin);
* `staged`: two-step training in a run;
* `train`: `train`, `resume`, the epoch loop;
* `deploy`: `convert`, `benchmark`, `float_twin`, `demo`.
"""

from bayes_larq.app.config import (
    DEFAULT_LEARNING_RATES,
    DEMO_SETTINGS,
    FLIP_THRESHOLDS,
    FLOAT_TWIN,
    LR_SCHEDULES,
    MAX_EPOCHS,
    MAX_SEED,
    OPTIMIZERS,
    STRATEGIES,
    RunConfig,
)
from bayes_larq.app.deploy import (
    Benchmark,
    Conversion,
    Demo,
    benchmark,
    convert,
    demo,
    float_twin,
    test_images,
)
from bayes_larq.app.distribute import distribution, is_chief, strategy_name
from bayes_larq.app.errors import JobFailed, RunError, RunInterrupted, TrainingDiverged
from bayes_larq.app.evaluation import Evaluation, evaluate, load_classifier
from bayes_larq.app.interrupts import raise_interrupt
from bayes_larq.app.model import (
    TOP5_MIN_CLASSES,
    build_model,
    compile_bonn,
    make_optimizer,
    new_bonn,
    train_examples,
)
from bayes_larq.app.rundir import RunDirectory, RunState, run_config_of
from bayes_larq.app.train import StopOnNonFiniteLoss, Trained, resume, train
from bayes_larq.training import MIXTURE_UPDATES

__all__ = [
    "DEFAULT_LEARNING_RATES", "DEMO_SETTINGS", "FLIP_THRESHOLDS", "FLOAT_TWIN", "LR_SCHEDULES",
    "MAX_EPOCHS", "MAX_SEED",
    "MIXTURE_UPDATES", "OPTIMIZERS", "STRATEGIES", "TOP5_MIN_CLASSES", "Benchmark",
    "Conversion", "Demo",
    "Evaluation", "JobFailed", "RunConfig", "RunDirectory", "RunError", "RunInterrupted",
    "RunState", "StopOnNonFiniteLoss", "Trained", "TrainingDiverged", "benchmark",
    "build_model", "compile_bonn", "convert", "demo", "distribution", "evaluate",
    "float_twin", "is_chief", "load_classifier", "make_optimizer", "new_bonn",
    "raise_interrupt", "resume", "run_config_of", "strategy_name", "test_images", "train",
    "train_examples",
]
