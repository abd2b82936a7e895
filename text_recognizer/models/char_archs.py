"""The character networks that params.yaml's `model.arch` picks between, and what a checkpoint records of one.

The model section holds the sizes of every arch (so `dvc exp run -S model.arch=mlp` needs nothing else), but a
network is built from, and its checkpoint records, only the arch and the keys that arch's constructor takes:
a checkpoint of an MLP that listed num_blocks would tell its reader something false.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from text_recognizer.models.archs import network_class, recorded_kwargs
from text_recognizer.models.cnn import CNN
from text_recognizer.models.mlp import MLP
from text_recognizer.models.resnet import ResNetClassifier

CHAR_NETWORKS: dict[str, type[nn.Module]] = {"resnet": ResNetClassifier, "cnn": CNN, "mlp": MLP}  # params.CHAR_ARCHS


def arch_kwargs(arch: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """`arch` and the keys of `section` (the model section) that its constructor reads; num_classes is the data's."""
    return recorded_kwargs(CHAR_NETWORKS, arch, section)


def char_network(*, arch: str, **kwargs: Any) -> nn.Module:
    """The untrained network that a char checkpoint's model_kwargs (arch_kwargs plus num_classes) describe."""
    return network_class(CHAR_NETWORKS, arch)(**kwargs)
