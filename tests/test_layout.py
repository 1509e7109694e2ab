"""The package layout: the core never imports the application; public names are declared;
docs/layout.md has a row for every module."""

import ast
import pathlib
import re
import textwrap

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


# --------------------------------------------------------------------------- the application

APP = sorted((ROOT / "bayes_larq" / "app").glob("*.py"))
MAX_APP_MODULE_LINES = 450


def app_imports(path):
    """The application modules (`bayes_larq.app.X`) that `path` imports, anywhere in it."""
    found = set()
    for name in imported_modules(path):
        parts = name.split(".")
        if parts[:2] == ["bayes_larq", "app"] and len(parts) > 2:
            if (ROOT / "bayes_larq" / "app" / f"{parts[2]}.py").exists():
                found.add(parts[2])
    return found - {path.stem}


def import_cycles(graph):
    """Every cycle of the directed graph {node: {nodes it imports}}, as a list of nodes."""
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_the_application_imports_in_one_direction():
    # The package's __init__ imports its modules for `bl.app.runs`; it is not one of them.
    graph = {path.stem: app_imports(path) for path in APP if path.name != "__init__.py"}
    assert import_cycles(graph) == []
    # runs.py gathers the job's names for Python users; only the command line uses it.
    assert {name for name, imports in graph.items() if "runs" in imports} == {"cli"}


def test_the_cycle_check_finds_a_cycle_through_a_third_module():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c", "a"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_application_module_is_long():
    lengths = {path.name: len(path.read_text().splitlines()) for path in APP}
    assert {name: n for name, n in lengths.items() if n > MAX_APP_MODULE_LINES} == {}


# --------------------------------------------------------------------------- internals

# The modules whose job is to hold every private TensorFlow / Keras / LCE use.
INTERNALS = {"_keras.py", "_tflite.py", "_legacy_keras.py"}
PRIVATE_MODULES = ("tensorflow.python", "tensorflow.lite.python", "tensorflow.core",
                   "larq_compute_engine.tflite.python", "keras.src", "tf_keras.src")
FRAMEWORKS = ("tensorflow", "tf_keras", "keras", "larq", "larq_compute_engine")
# Private attributes of the standard library's argparse, each explained where it is used.
ALLOWED_PRIVATE_ATTRIBUTES = {("cli.py", "_group_actions"), ("cli.py", "_negative_number_matcher")}


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source, filename="module.py"):
    """What `source` uses of framework internals: private modules it imports, and
    private attributes it reads on anything but itself (`self`, `cls`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for module in modules:
            parts = module.split(".")
            if parts[0] in FRAMEWORKS and (module.startswith(PRIVATE_MODULES)
                                           or any(_is_private(p) for p in parts[1:])):
                found.append(module)
        attribute = None
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                attribute = node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and _is_private(node.args[1].value)):
            attribute = node.args[1].value
        if attribute and (filename, attribute) not in ALLOWED_PRIVATE_ATTRIBUTES:
            found.append(f".{attribute}")
    return found


def _own_private_names(path):
    """Private names a module defines itself (its helpers may be used by its siblings)."""
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_private_framework_apis_are_used_only_in_the_internals_modules():
    sources = sorted((ROOT / "bayes_larq").rglob("*.py")) + sorted((ROOT / "models").glob("*.py"))
    offenders = {}
    for path in sources:
        if path.name in INTERNALS:
            continue
        uses = [u for u in private_uses(path.read_text(), path.name)
                if u.lstrip(".") not in _own_private_names(path)]
        if uses:
            offenders[str(path.relative_to(ROOT))] = uses
    assert offenders == {}


def test_the_private_api_check_catches_each_kind():
    source = textwrap.dedent("""
        from tensorflow.lite.python import schema_py_generated
        import larq_compute_engine.tflite.python.interpreter
        from tensorflow.python.keras import backend
        from tf_keras.api._v2 import keras
        layers = model._flatten_layers()
        flag = getattr(model, "_is_graph_network", False)
        mine = self._cache
        public = tf.keras.layers.Dense
    """)
    assert sorted(private_uses(source)) == sorted([
        "tensorflow.lite.python", "tensorflow.lite.python.schema_py_generated",
        "larq_compute_engine.tflite.python.interpreter",
        "tensorflow.python.keras", "tensorflow.python.keras.backend",
        "tf_keras.api._v2", "tf_keras.api._v2.keras", "._flatten_layers",
        "._is_graph_network"])


def test_all_lists_every_name_that_other_modules_import():
    """`from bayes_larq.X import name` anywhere in the project: `name` is in X.__all__."""
    import importlib

    files = [p for folder in ("bayes_larq", "models", "tests", "benchmarks")
             for p in sorted((ROOT / folder).rglob("*.py"))]
    missing = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and not node.level and node.module
                    and node.module.split(".")[0] == "bayes_larq"):
                continue
            module = importlib.import_module(node.module)
            exported = getattr(module, "__all__", None)
            for alias in node.names:
                if alias.name.startswith("_") or _is_submodule(f"{node.module}.{alias.name}"):
                    continue
                if exported is None or alias.name not in exported:
                    missing.add(f"{node.module}.{alias.name}")
    assert sorted(missing) == [], sorted(missing)


def _is_submodule(name):
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def test_all_names_exist_and_are_unique():
    import importlib

    for path in CORE + APP:
        if path.name == "__init__.py" and path.parent.name == "app":
            continue
        package = "bayes_larq.models" if path.parent.name == "models" else (
            "bayes_larq.app" if path.parent.name == "app" else "bayes_larq")
        name = package if path.name == "__init__.py" else f"{package}.{path.stem}"
        module = importlib.import_module(name)
        exported = getattr(module, "__all__", [])
        assert len(exported) == len(set(exported)), name
        assert [n for n in exported if not hasattr(module, n)] == [], name


def unannotated_public_functions(path):
    """Public module-level functions and public methods of public classes in `path` that
    lack a return annotation or an annotation of a named parameter."""
    missing = []

    def check(function, owner=""):
        if function.name.startswith("_"):
            return
        arguments = function.args
        named = [a for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs
                 if a.arg not in ("self", "cls")]
        if function.returns is None or any(a.annotation is None for a in named):
            missing.append(f"{owner}{function.name}")

    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            check(node)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for method in node.body:
                if isinstance(method, ast.FunctionDef):
                    check(method, f"{node.name}.")
    return missing


def test_public_functions_of_the_application_and_models_have_type_hints():
    paths = [p for p in APP + sorted((ROOT / "models").glob("*.py"))]
    missing = {str(p.relative_to(ROOT)): m for p in paths if (m := unannotated_public_functions(p))}
    assert missing == {}


def test_the_type_hint_check_finds_functions_and_methods_without_hints(tmp_path):
    source = tmp_path / "module.py"
    source.write_text(textwrap.dedent('''
        def typed(x: int) -> int: ...
        def untyped(x): ...
        def _private(x): ...
        class Public:
            def method(self, y) -> None: ...
            def hinted(self, y: int) -> None: ...
            def _helper(self, y): ...
        class _Private:
            def method(self, y): ...
    '''))
    assert unannotated_public_functions(source) == ["untyped", "Public.method"]


# --------------------------------------------------------------------------- the layout page

LAYOUT_PAGE = ROOT / "docs" / "layout.md"


def layout_rows():
    """The first cell of every table row of docs/layout.md, without its backquotes."""
    return {match.strip("`") for match in re.findall(r"^\| (`[^`]+`) \|", LAYOUT_PAGE.read_text(),
                                                       re.M)}


def test_the_layout_page_has_a_row_for_every_module():
    rows = layout_rows()
    core = {f"bayes_larq/{p.name}" for p in (ROOT / "bayes_larq").glob("*.py")
            if p.name != "__init__.py"}
    app = {p.name for p in APP if p.name != "__init__.py"}
    assert sorted((core | app | {"models/"}) - rows) == []
    assert sorted(rows - core - app - {"models/"}) == []  # no row for a module that is gone
