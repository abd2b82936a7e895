"""The line networks that params.yaml's `line_model.arch` picks between, and what a checkpoint records of one.

As with the character networks (char_archs), a network is built from, and its checkpoint records, only the arch and
the keys that arch's constructor takes: a simple model's checkpoint that listed window_stride would tell its reader
something false.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from text_recognizer.models.archs import network_class, recorded_kwargs
from text_recognizer.models.line_cnn import LineCNN
from text_recognizer.models.line_simple import LineCNNSimple

LINE_NETWORKS: dict[str, type[nn.Module]] = {"ctc": LineCNN, "simple": LineCNNSimple}  # params.LINE_ARCHS


def line_arch_kwargs(arch: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """`arch` and the keys of `section` (line_model) that its constructor reads; num_classes is the data's."""
    return recorded_kwargs(LINE_NETWORKS, arch, section)


def line_network(*, arch: str, **kwargs: Any) -> nn.Module:
    """The untrained network that a line checkpoint's model_kwargs (line_arch_kwargs plus num_classes) describe."""
    return network_class(LINE_NETWORKS, arch)(**kwargs)
