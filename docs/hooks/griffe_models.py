"""Griffe extension: the repository's models/ folder is the package `bayes_larq.models`.

setup.cfg installs models/ as `bayes_larq.models` (`package_dir`), but griffe reads the
source tree, where models/ sits beside bayes_larq/ rather than inside it. When griffe
has loaded `bayes_larq`, this loads models/ and makes it the package's `models` member,
so the API reference documents `bayes_larq.models` under the name users import.

A builder is an architecture function decorated with `models.common.model_builder`,
which gives it the signature every builder shares at run time; griffe reads the source,
so this gives the documented builder that signature too: `num_classes` and
`input_shape` with the decorator's defaults, `LayerFactory`'s arguments around the
architecture's own (the split `common._AFTER_ARCHITECTURE`).
"""

import ast

import griffe

PACKAGE, FOLDER = "bayes_larq", "models"


class MountModels(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        if pkg.name != PACKAGE or FOLDER in pkg.members:
            return
        models = loader.load(FOLDER)
        pkg.set_member(FOLDER, models)
        for module in models.modules.values():
            for function in module.functions.values():
                _document_builder_signature(models["common"], function)


def _document_builder_signature(common: griffe.Module, function: griffe.Function) -> None:
    decorator = next((d.value for d in function.decorators
                      if isinstance(d.value, griffe.ExprCall)
                      and str(d.value.function) == "model_builder"), None)
    if decorator is None:
        return
    defaults = {argument.name: argument.value for argument in decorator.arguments}
    after = ast.literal_eval(str(common["_AFTER_ARCHITECTURE"].value))
    shared = [p for p in common["LayerFactory"]["__init__"].parameters if p.name != "self"]
    positional = griffe.ParameterKind.positional_or_keyword
    head = [griffe.Parameter("num_classes", annotation="int", kind=positional,
                             default=str(defaults["num_classes"])),
            griffe.Parameter("input_shape", annotation="tuple[int, int, int]",
                             kind=positional, default=str(defaults["input_shape"]))]
    architecture = list(function.parameters)[3:]  # after factory, inputs, num_classes
    function.parameters = griffe.Parameters(
        *head, *[p for p in shared if p.name not in after], *architecture,
        *[p for p in shared if p.name in after])
