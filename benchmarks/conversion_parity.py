"""Keras-vs-TFLite parity of a trained BONN model, converted two ways.

    python benchmarks/conversion_parity.py RUN_DIR [--samples 1000]

`bayes_larq.convert.convert` converts a `BayesianSign` model through `debayesianize`
("ste_sign" kernels, the scale 1/w_bar folded into the following BatchNorm). This script
converts the trained classifier of RUN_DIR both that way and as it is (LCE folds the
scale itself), and prints, for each, the largest absolute logit difference from the
Keras model and the top-1 agreement on the first `--samples` test images, and how far
the debayesianized Keras model itself is from the original.

It then attributes the outliers: the images whose logits differ by more than `--atol`
in the library's conversion, each with its binarization margin (the smallest |a| over
the activations a that the network binarizes, `bl.convert.binarization_margin`), against
the margins of the other images. A margin within float rounding of zero means Keras and
LCE may give that activation opposite signs.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bayes_larq  # noqa: E402,F401  - selects tf_keras first
import larq_compute_engine as lce  # noqa: E402
import numpy as np  # noqa: E402

from bayes_larq import convert  # noqa: E402
from bayes_larq.app import data, runs  # noqa: E402
from bayes_larq.bayesianize import debayesianize  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--atol", type=float, default=1e-3)
    args = parser.parse_args(argv)
    classifier = runs.load_classifier(args.run_dir)
    config = runs.RunDirectory(args.run_dir).read_config()
    x, _ = next(iter(data.load(config.dataset, "test", args.samples, training=False,
                               data_dir=config.data_dir)))
    x = x.numpy()
    keras, plain = (m.predict(x, verbose=0) for m in (classifier, debayesianize(classifier)))
    library = convert.tflite_predict(convert.convert(classifier), x).reshape(keras.shape)
    for label, tflite in (("through debayesianize (the library's convert)", library),
                          ("as it is (lce.convert_keras_model)",
                           convert.tflite_predict(lce.convert_keras_model(classifier), x))):
        agreement = convert.Agreement.of(keras, tflite)
        print(f"{label}: max |logit diff| {agreement.max_abs_diff:.3g}, "
              f"top-1 agreement {agreement.top1_agreement:.4f} on {agreement.samples} images")
    print(f"Keras, debayesianized against original: max |logit diff| "
          f"{float(np.max(np.abs(keras - plain))):.3g}")
    outliers = np.abs(keras - library).max(axis=1) > args.atol
    margins = convert.binarization_margin(classifier, x)
    print(f"images with a logit off by more than {args.atol:g}: {int(outliers.sum())}; their "
          f"binarization margins: {', '.join(f'{m:.2g}' for m in np.sort(margins[outliers]))}")
    if (~outliers).any():
        print(f"the other images' margins: smallest {margins[~outliers].min():.2g}, median "
              f"{float(np.median(margins[~outliers])):.2g}; images with a margin under 1e-6: "
              f"{int((margins < 1e-6).sum())}")


if __name__ == "__main__":
    main()
