"""One source of truth: the layers import downwards, and params.yaml's values are written nowhere else.

- The data layer (text_recognizer/data/) imports neither the networks (models) nor their Lightning
  wrappers (lit_models): what both need, the window and CTC step arithmetic, is line_geometry's.
- params.py and line_geometry.py load no torch (every stage checks params before its heavy imports).
- The networks, data modules and helpers take the values params.yaml holds as arguments, without
  defaults of their own.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from text_recognizer import line_geometry
from text_recognizer import params as P

ROOT = Path(__file__).resolve().parents[1]
DATA_FILES = sorted((ROOT / "text_recognizer" / "data").glob("*.py"))
ABOVE_DATA = ("text_recognizer.models", "text_recognizer.lit_models")


def imported_modules(source: str, package: str) -> set[str]:
    """Every module an import statement of `source` names, lazy imports in functions included; relative
    imports resolved against `package`, and `from pkg import name` counted as pkg and pkg.name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, node.module] if node.module else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def reaches_above_data(module: str) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in ABOVE_DATA)


def test_the_import_check_sees_every_form_of_import():
    forms = [
        "import text_recognizer.models.line_cnn",
        "from text_recognizer.lit_models.ctc import ctc_loss",
        "from text_recognizer import models",
        "from ..lit_models import ctc",
        "def f():\n    from text_recognizer.models.resnet import ResNetClassifier",
    ]
    for source in forms:
        assert any(map(reaches_above_data, imported_modules(source, "text_recognizer.data"))), source
    fine = "from text_recognizer.line_geometry import crop_widths\nfrom . import emnist\nimport torch"
    assert not any(map(reaches_above_data, imported_modules(fine, "text_recognizer.data")))


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: p.name)
def test_the_data_layer_imports_no_models_or_lit_models(path: Path):
    assert DATA_FILES and path.suffix == ".py"
    found = sorted(m for m in imported_modules(path.read_text(), "text_recognizer.data") if reaches_above_data(m))
    assert not found, f"{path.relative_to(ROOT)} imports {found}: the data layer sits below the models"


def test_params_and_line_geometry_load_no_torch():
    code = "import sys, text_recognizer.params, text_recognizer.line_geometry; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- no defaults for what params.yaml holds ------------------------------------------------------------

PARAMS_KEYS = {f.name for cls in P.SECTIONS.values() for f in dataclasses.fields(cls)}


def _callables() -> list[Callable]:
    from text_recognizer.data.augmentation import augment_batch
    from text_recognizer.data.device_loader import (
        EmnistDataModule,
        EmnistLinesDataModule,
        EmnistLinesWindowsDataModule,
    )
    from text_recognizer.lit_models.classifier import CharClassifier
    from text_recognizer.models.char_archs import arch_kwargs, char_network
    from text_recognizer.models.cnn import CNN
    from text_recognizer.models.line_archs import line_arch_kwargs, line_network
    from text_recognizer.models.line_cnn import LineCNN
    from text_recognizer.models.line_simple import LineCNNSimple
    from text_recognizer.models.mlp import MLP
    from text_recognizer.models.resnet import ResNetClassifier

    geometry = [
        f
        for name, f in vars(line_geometry).items()
        if inspect.isfunction(f) and f.__module__ == line_geometry.__name__ and not name.startswith("_")
    ]
    modules = [EmnistDataModule, EmnistLinesDataModule, EmnistLinesWindowsDataModule, CharClassifier]
    networks = [LineCNN, LineCNNSimple, ResNetClassifier, CNN, MLP, char_network, arch_kwargs]
    networks += [line_network, line_arch_kwargs]
    return [*networks, *modules, augment_batch, *geometry]


def test_what_params_yaml_holds_has_no_default_in_code():
    assert {"window_width", "window_stride", "head", "width", "fc_dim", "dropout", "label_smoothing"} <= PARAMS_KEYS
    assert {"arch", "conv_dim", "fc1_dim", "fc2_dim", "overfit_batches"} <= PARAMS_KEYS
    defaulted = []
    for thing in _callables():
        name = thing.__name__
        for parameter in inspect.signature(thing).parameters.values():
            has_default = parameter.default is not inspect.Parameter.empty
            if parameter.name in PARAMS_KEYS and has_default:
                defaulted.append(f"{name}({parameter.name}={parameter.default!r})")
    assert not defaulted, f"defaults of values params.yaml holds: {defaulted}"
