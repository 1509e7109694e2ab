"""Griffe extension: the repository's models/ folder is the package `bayes_larq.models`.

setup.cfg installs models/ as `bayes_larq.models` (`package_dir`), but griffe reads the
source tree, where models/ sits beside bayes_larq/ rather than inside it. When griffe
has loaded `bayes_larq`, this loads models/ and makes it the package's `models` member,
so the API reference documents `bayes_larq.models` under the name users import.
"""

import griffe

PACKAGE, FOLDER = "bayes_larq", "models"


class MountModels(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        if pkg.name != PACKAGE or FOLDER in pkg.members:
            return
        models = loader.load(FOLDER)
        pkg.set_member(FOLDER, models)
