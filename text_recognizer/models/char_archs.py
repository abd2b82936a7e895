"""The character networks that params.yaml's `model.arch` picks between, and what a checkpoint records of one.

The model section holds the sizes of every arch (so `dvc exp run -S model.arch=mlp` needs nothing else), but a
network is built from, and its checkpoint records, only the arch and the keys that arch's constructor takes:
a checkpoint of an MLP that listed num_blocks would tell its reader something false.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from text_recognizer.models.cnn import CNN
from text_recognizer.models.mlp import MLP
from text_recognizer.models.resnet import ResNetClassifier

CHAR_NETWORKS: dict[str, type[nn.Module]] = {"resnet": ResNetClassifier, "cnn": CNN, "mlp": MLP}  # params.CHAR_ARCHS


def _network_class(arch: str) -> type[nn.Module]:
    if arch not in CHAR_NETWORKS:
        raise ValueError(f"arch must be one of {sorted(CHAR_NETWORKS)}, got {arch!r}")
    return CHAR_NETWORKS[arch]


def arch_kwargs(arch: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """`arch` and the keys of `section` (the model section) that its constructor reads; num_classes is the data's."""
    parameters = inspect.signature(_network_class(arch)).parameters.values()
    names = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "num_classes"]
    return {"arch": arch, **{name: section[name] for name in names}}


def char_network(*, arch: str, **kwargs: Any) -> nn.Module:
    """The untrained network that a char checkpoint's model_kwargs (arch_kwargs plus num_classes) describe."""
    return _network_class(arch)(**kwargs)
