"""The defaults a user reads in the documentation are the ones every layer uses.

The reference is the documentation, not `bayes_larq.defaults`: a default changed in the
code but not in docs/usage.md and docs/index.md (or the reverse) fails here, at every
layer that applies it (BayesianSign, BONN, a run's model, the command line's help).
"""

import pathlib
import re

import pytest

from bayes_larq.app import cli, runs
from bayes_larq.quantizers import BayesianSign, bayesian_quantizers
from bayes_larq.training import BONN

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def section(page, heading):
    """The text of `page` (docs/) under `heading`, up to the next heading of its level."""
    text = (DOCS / page).read_text()
    level = heading.split(" ")[0]
    return text.split(heading + "\n")[1].split("\n" + level + " ")[0]


# docs/usage.md, "Choosing lam, nu and the reduction (the defaults)": `reduction="mean"` is
# the default, `lam=1e-4` and `nu=1e-2`; docs/index.md, "What the evidence says": theta = 1e-3.
DEFAULTS_SECTION = section("usage.md", "## Choosing lam, nu and the reduction (the defaults)")


def documented(pattern, text=DEFAULTS_SECTION):
    return re.search(pattern, text).group(1)


DOCUMENTED = {
    "reduction": documented(r'`reduction="(\w+)"` is the default'),
    "lam": float(documented(r"`lam=([0-9.e-]+)`")),
    "nu": float(documented(r"`nu=([0-9.e-]+)`")),
}
EVIDENCE_SUMMARY = " ".join(section("index.md", "## What the evidence says").split())
DOCUMENTED_THETA = float(documented(r"and theta = ([0-9.e-]+)\.", EVIDENCE_SUMMARY))


def kernel_loss_settings(quantizer):
    return {key: quantizer.get_config()[key] for key in DOCUMENTED}


def test_the_docs_state_one_value_per_default():
    assert DOCUMENTED == {"reduction": "mean", "lam": 1e-4, "nu": 1e-2}
    # The evidence summary states the same lam and reduction as the section.
    assert f'`reduction="{DOCUMENTED["reduction"]}"`, lam = 1e-4' in EVIDENCE_SUMMARY
    assert DOCUMENTED_THETA == 1e-3


def test_bayesian_sign_and_bonn_use_the_documented_defaults():
    assert kernel_loss_settings(BayesianSign()) == DOCUMENTED
    model = runs.build_model(runs.RunConfig(arch={"width": 4}))
    assert float(BONN(model).feature_loss.theta.numpy()) == pytest.approx(DOCUMENTED_THETA)


def test_a_run_without_loss_settings_builds_the_documented_defaults():
    config = runs.RunConfig(model="small_cnn", dataset="fashion_mnist", arch={"width": 4})
    assert (config.lam, config.nu, config.theta) == (
        DOCUMENTED["lam"], DOCUMENTED["nu"], DOCUMENTED_THETA)
    bonn = runs.new_bonn(config)
    quantizers = bayesian_quantizers(bonn.classifier)
    assert len(quantizers) == 4
    assert all(kernel_loss_settings(q) == DOCUMENTED for q in quantizers)
    assert float(bonn.feature_loss.theta.numpy()) == pytest.approx(DOCUMENTED_THETA)


def help_line(text, flag):
    """The help text of `flag` in argparse's option list (not its usage line)."""
    return next(line for line in text.splitlines() if line.strip().startswith(flag + " "))


def test_the_command_line_shows_the_documented_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out.replace("{mean,sum}\n", "{mean,sum} ")
    for flag, value in (("--lam", DOCUMENTED["lam"]), ("--nu", DOCUMENTED["nu"]),
                        ("--theta", DOCUMENTED_THETA)):
        assert help_line(text, flag).endswith(f"[{value:g}]")
    assert help_line(text, "--reduction").endswith(f"[{DOCUMENTED['reduction']}]")
