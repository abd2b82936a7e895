"""What a params.yaml `arch` key picks, shared by the char (char_archs) and line (line_archs) networks.

A network is built from, and its checkpoint records, only the arch and the keys its constructor takes, so
both registries read a section the same way: by the constructor's keyword-only parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn


def network_class(networks: Mapping[str, type[nn.Module]], arch: str) -> type[nn.Module]:
    if arch not in networks:
        raise ValueError(f"arch must be one of {sorted(networks)}, got {arch!r}")
    return networks[arch]


def recorded_kwargs(networks: Mapping[str, type[nn.Module]], arch: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """`arch` and the keys of `section` that its constructor reads; num_classes is the data's."""
    parameters = inspect.signature(network_class(networks, arch)).parameters.values()
    names = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "num_classes"]
    return {"arch": arch, **{name: section[name] for name in names}}
