"""Loading a trained classifier and measuring its test accuracy."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import tensorflow as tf

from bayes_larq.app import data
from bayes_larq.app.config import RunConfig
from bayes_larq.app.errors import RunError, Step, settings_checked
from bayes_larq.app.model import TOP5_MIN_CLASSES
from bayes_larq.app.rundir import RunDirectory, run_config_of
from bayes_larq.training import BONN

__all__ = ["Evaluation", "evaluate", "load_classifier", "test_data_of"]


def load_classifier(path: str | os.PathLike) -> tf.keras.Model:
    """The trained classifier of a run directory, or a saved Keras model file."""
    path = pathlib.Path(path)
    if path.is_dir():
        if not RunDirectory(path).exists():
            raise RunError(f"{path} is a directory but not a bayes-larq run directory (no "
                           f"state.json; a SavedModel is not read). Pass a run directory or "
                           f"a .keras file written by bayes-larq.")
        path = RunDirectory(path).classifier
        if not path.exists():
            raise RunError(f"{path} does not exist: the run has not finished. Resume it "
                           f"with `", Step("resume", path.parent), "`.")
    elif not path.exists():
        raise RunError(f"No such run directory or model file: {path}.")
    try:
        model = tf.keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first_line = str(err).splitlines()[0][:200] if str(err) else ""
        raise RunError(f"{path} is not a Keras model this library can load "
                       f"({type(err).__name__}: {first_line}). "
                       f"Pass a run directory or a .keras file written by bayes-larq.") from None
    return model.classifier if isinstance(model, BONN) else model


def test_data_of(path: str | os.PathLike, dataset: str | None = None,
                 data_dir: str | None = None) -> tuple[str, str | None]:
    """The dataset and data directory to test the model at `path` on: those given, else
    those of the run that holds it, else the default dataset's."""
    config = run_config_of(path) or RunConfig()
    return (dataset or config.dataset,
            data_dir if data_dir is not None else config.data_dir)


@dataclasses.dataclass
class Evaluation:
    """Test accuracy of a classifier: top-1, top-5 (above 10 classes), and the count."""

    accuracy: float
    examples: int
    top5_accuracy: float | None = None

    def as_dict(self) -> dict:
        values = dataclasses.asdict(self)
        return {k: v for k, v in values.items() if v is not None}


def evaluate(classifier: tf.keras.Model, dataset: str, batch_size: int = 256,
             data_dir: str | None = None, limit: int | None = None) -> Evaluation:
    """Top-1 (and, above 10 classes, top-5) test accuracy of a classifier on `dataset`."""
    info = data.dataset_info(dataset)
    classes = int(classifier.outputs[0].shape[-1])
    if classes != info.num_classes or tuple(classifier.inputs[0].shape[1:]) != info.input_shape:
        raise RunError(
            f"The model takes {tuple(classifier.inputs[0].shape[1:])} inputs and predicts "
            f"{classes} classes, but {dataset} has {info.input_shape} images and "
            f"{info.num_classes} classes; pass the dataset the model was trained on.")
    with settings_checked("batch_size", "limit"):
        data.check_count("batch_size", batch_size)
        data.check_count("limit", limit, allow_none=True)
    test = data.load(dataset, "test", batch_size, training=False, data_dir=data_dir,
                     limit=limit)
    metrics = [tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if classes >= TOP5_MIN_CLASSES:
        metrics.append(tf.keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy"))
    examples = 0
    for images, labels in test:
        logits = classifier(images, training=False)
        for metric in metrics:
            metric.update_state(labels, logits)
        examples += int(labels.shape[0])
    return Evaluation(examples=examples,
                      **{metric.name: float(metric.result()) for metric in metrics})
