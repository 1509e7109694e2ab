"""The loss-weight defaults live in `bayes_larq.defaults` and every layer above reads them."""

import pathlib

import pytest

from bayes_larq import defaults
from bayes_larq.app import cli, runs
from bayes_larq.quantizers import BayesianSign, bayesian_quantizers

DEFAULT_KERNEL_LOSS = {"lam": defaults.LAM, "nu": defaults.NU, "reduction": defaults.REDUCTION,
                       "scale": defaults.SCALE, "prior_gradient": defaults.PRIOR_GRADIENT}


def kernel_loss_settings(quantizer):
    return {key: quantizer.get_config()[key] for key in DEFAULT_KERNEL_LOSS}


def test_bayesian_sign_defaults_are_the_library_defaults():
    assert kernel_loss_settings(BayesianSign()) == DEFAULT_KERNEL_LOSS


def test_a_run_without_loss_settings_builds_the_library_defaults():
    config = runs.RunConfig(model="small_cnn", dataset="fashion_mnist", arch={"width": 4})
    bonn = runs.new_bonn(config)
    quantizers = bayesian_quantizers(bonn.classifier)
    assert len(quantizers) == 4
    assert all(kernel_loss_settings(q) == DEFAULT_KERNEL_LOSS for q in quantizers)
    assert float(bonn.feature_loss.theta.numpy()) == pytest.approx(defaults.THETA)


def help_line(text, flag):
    """The help text of `flag` in argparse's option list (not its usage line)."""
    return next(line for line in text.splitlines() if line.strip().startswith(flag + " "))


def test_the_command_line_shows_the_library_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out.replace("{mean,sum}\n", "{mean,sum} ")
    for flag, value in (("--lam", defaults.LAM), ("--nu", defaults.NU),
                        ("--theta", defaults.THETA)):
        assert help_line(text, flag).endswith(f"[{value:g}]")
    assert help_line(text, "--reduction").endswith(f"[{defaults.REDUCTION}]")


def short_exponent(value):
    """1e-4 as the docs write it (Python's `:.0e` gives 1e-04)."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def test_the_readme_states_the_library_defaults():
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    first_screen = " ".join(readme.split("## Install")[0].replace("> ", "").split())
    assert (f'`reduction="{defaults.REDUCTION}"`, lam = {short_exponent(defaults.LAM)}'
            in first_screen)
    assert f"theta = {short_exponent(defaults.THETA)}" in first_screen
