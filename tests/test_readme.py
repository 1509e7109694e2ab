"""The README's usage example runs as written."""

import pathlib
import re

import bayes_larq  # noqa: F401


def test_readme_usage_example_runs(capsys):
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    usage = readme.split("## Usage", 1)[1]
    code = re.search(r"```python\n(.*?)```", usage, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "LceBconv2d" in printed and "top1_agreement=1.0" in printed
