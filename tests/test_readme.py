"""Every Python code block of the README runs as written (in a scratch directory)."""

import pathlib
import re

import bayes_larq  # noqa: F401
import pytest

README = pathlib.Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_code_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_code_block_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {})
    printed = capsys.readouterr().out
    if "bl.convert.op_census" in BLOCKS[index] or "runs.convert" in BLOCKS[index]:
        assert "LceBconv2d" in printed
