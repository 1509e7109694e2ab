"""Every Python code block of the README and of the pages that teach the API (docs/usage.md,
docs/cli.md) runs as written (in a scratch directory)."""

import pathlib
import re

import bayes_larq  # noqa: F401
import pytest

ROOT = pathlib.Path(__file__).parents[1]
PAGES = ("README.md", "docs/usage.md", "docs/cli.md")
BLOCKS = [(page, index, block) for page in PAGES
          for index, block in enumerate(re.findall(r"```python\n(.*?)```",
                                                   (ROOT / page).read_text(), re.S))]


def test_the_pages_have_code_blocks():
    per_page = {page: sum(1 for p, _, _ in BLOCKS if p == page) for page in PAGES}
    # BONN from scratch and bayesianize; the job as Python (`runs`).
    assert per_page["docs/usage.md"] >= 2 and per_page["docs/cli.md"] >= 1


@pytest.mark.parametrize("page, index, block", BLOCKS, ids=[f"{p}-{i}" for p, i, _ in BLOCKS])
def test_code_block_runs(page, index, block, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(block, f"{page} block {index}", "exec"), {})
    printed = capsys.readouterr().out
    if "bl.convert.op_census" in block or "runs.convert" in block:
        assert "LceBconv2d" in printed
