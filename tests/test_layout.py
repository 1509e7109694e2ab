"""The package layout: the core never imports the application; public names are declared."""

import ast
import pathlib

import bayes_larq as bl

ROOT = pathlib.Path(__file__).parents[1]
# `python -m bayes_larq` (__main__.py) is the command line's entry point: application.
CORE = [path for path in sorted((ROOT / "bayes_larq").glob("*.py"))
        + sorted((ROOT / "models").glob("*.py")) if path.name != "__main__.py"]


def imported_modules(path):
    """Every module named by an import statement of `path` (relative imports resolved)."""
    package = "bayes_larq.models" if path.parent.name == "models" else "bayes_larq"
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def test_core_never_imports_the_application():
    offenders = {path.name: [n for n in imported_modules(path) if n.startswith("bayes_larq.app")]
                 for path in CORE}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_import_graph_check_catches_an_application_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from bayes_larq.app import runs\nfrom bayes_larq import losses\n")
    assert "bayes_larq.app.runs" in imported_modules(bad)


def test_every_core_module_declares_its_public_names():
    missing = [path.name for path in CORE if "__all__" not in path.read_text()]
    assert missing == []


def test_documented_top_level_names_exist():
    for name in bl.__all__:
        assert getattr(bl, name) is not None, name
    assert bl.app.runs.train and bl.models.get and bl.profile.summary


def test_docstring_examples_of_the_core_run():
    import doctest
    import importlib

    modules = ["bayes_larq.losses", "bayes_larq.mixture", "bayes_larq.quantizers",
               "bayes_larq.training", "bayes_larq.callbacks", "bayes_larq.defaults",
               "bayes_larq.models", "bayes_larq.models.small", "bayes_larq.models.wrn",
               "bayes_larq.models.resnet"]
    attempted = 0
    for name in modules:
        module = importlib.import_module(name)
        result = doctest.testmod(module, extraglobs={"tf": __import__("tensorflow"),
                                                     "np": __import__("numpy")})
        assert result.failed == 0, name
        attempted += result.attempted
    assert attempted >= 8
