"""The documentation site (mkdocs.yml): every page and notebook is in its navigation, and the
API reference renders every public name of `bayes_larq` with a docstring.

`make docs` (in .ci/run) builds the site with `mkdocs build --strict`, which fails on a
broken link or an API object that does not resolve; what it cannot see, a page left out
of the navigation's plan or a public name nobody renders, is checked here.
"""

import importlib
import importlib.util
import inspect
import pathlib
import re

import bayes_larq as bl
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"
CONFIG = yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def nav_paths(entries):
    """Every page path of a mkdocs `nav` (strings, {title: path} and {title: [entries]})."""
    paths = []
    for entry in entries:
        if isinstance(entry, str):
            paths.append(entry)
        else:
            for value in entry.values():
                paths += nav_paths(value) if isinstance(value, list) else [value]
    return paths


def test_nav_paths_flattens_every_form_of_entry():
    nav = ["index.md", {"A": "a.md"}, {"B": ["b/index.md", {"C": "b/c.md"}]}]
    assert nav_paths(nav) == ["index.md", "a.md", "b/index.md", "b/c.md"]


def test_the_nav_lists_every_docs_page_and_every_notebook():
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")
             if "hooks" not in p.relative_to(DOCS).parts}
    examples = {f"examples/{p.name}" for p in (ROOT / "examples").glob("*.ipynb")}
    nav = nav_paths(CONFIG["nav"])
    assert len(nav) == len(set(nav)), "a page is listed twice"
    assert set(nav) == pages | examples | {"examples/README.md"}
    assert {"usage.md", "cli.md", "layout.md", "api/runs.md"} <= pages
    assert len(examples) >= 4


def rendered_modules():
    """The modules an API page renders with a mkdocstrings `::: module` directive."""
    return {name for page in API.glob("*.md")
            for name in re.findall(r"^::: ([\w.]+)", page.read_text(), re.M)}


def public_objects(module):
    """The functions and classes a module exports (its `__all__`), by name."""
    return {name: getattr(module, name) for name in module.__all__
            if inspect.isfunction(getattr(module, name)) or inspect.isclass(getattr(module, name))}


def test_every_name_of_bayes_larq_all_is_in_the_api_reference():
    index = (API / "index.md").read_text()
    modules = rendered_modules()
    missing = []
    for name in bl.__all__:
        if f"`bl.{name}`" not in index:
            missing.append(f"{name}: not in docs/api/index.md")
        value = getattr(bl, name)
        if inspect.ismodule(value):
            # bl.app is rendered through its Python API, bayes_larq.app.runs.
            if value.__name__ not in modules or (name == "app" and "bayes_larq.app.runs"
                                                 not in modules):
                missing.append(f"{name}: no `::: {value.__name__}` page")
        elif name != "__version__":
            home = importlib.import_module(value.__module__)
            if value.__module__ not in modules or name not in home.__all__:
                missing.append(f"{name}: {value.__module__} does not render it")
    assert missing == []


def test_a_new_public_module_without_a_page_is_caught():
    modules = rendered_modules()
    assert "bayes_larq.quantizers" in modules and "bayes_larq.app.runs" in modules
    assert "bayes_larq.models" in modules and "bayes_larq.models.common" in modules
    assert "bayes_larq.nonexistent" not in modules


def test_every_rendered_function_and_class_has_a_docstring():
    undocumented = [f"{module}.{name}" for module in sorted(rendered_modules())
                    if hasattr(importlib.import_module(module), "__all__")
                    for name, value in public_objects(importlib.import_module(module)).items()
                    if not (value.__doc__ or "").strip()]
    assert undocumented == []


def test_the_readme_sections_the_site_includes_exist():
    """docs/index.md and docs/demo.md include README sections (pymdownx.snippets)."""
    readme = (ROOT / "README.md").read_text()
    for page in ("index.md", "demo.md"):
        for section in re.findall(r'^--8<-- "README\.md:(\w+)"$', (DOCS / page).read_text(),
                                  re.M):
            assert f"<!-- --8<-- [start:{section}] -->" in readme, section
            assert f"<!-- --8<-- [end:{section}] -->" in readme, section


# --------------------------------------------------------------------------- the examples hook

def load_hook():
    spec = importlib.util.spec_from_file_location("mount_folders",
                                                  DOCS / "hooks" / "mount_folders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target, page, expected", [
    # A repository link from docs/ into examples/ becomes the mounted page's path.
    ("../examples/quickstart.ipynb", "index.md", "examples/quickstart.ipynb"),
    ("../examples/README.md", "layout.md", "examples/README.md"),
    ("../../examples/deploy.ipynb#latency", "api/runs.md", "../examples/deploy.ipynb#latency"),
    ("../recipes/bonn-wrn22-cifar10.toml", "index.md", "recipes/bonn-wrn22-cifar10.toml"),
    # Everything else is MkDocs' to check (a folder named like a mounted one included).
    ("../examples2/a.md", "index.md", "../examples2/a.md"),
    ("method.md#the-flip-threshold", "index.md", "method.md#the-flip-threshold"),
    ("../benchmarks/sweep.py", "index.md", "../benchmarks/sweep.py"),
    ("https://larq.dev", "index.md", "https://larq.dev"),
    ("#notation", "method.md", "#notation"),
])
def test_links_into_examples_point_at_the_mounted_pages(target, page, expected):
    assert load_hook().site_link(target, page, "docs") == expected
