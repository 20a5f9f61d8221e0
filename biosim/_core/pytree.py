"""Frozen dataclasses registered as JAX pytrees.

Usage
-----
>>> from biosim._core.pytree import pytree_dataclass, static_field
>>> @pytree_dataclass
... class Params:
...     decay: float = 0.64          # traced leaf: differentiable, vmappable
...     n_regions: int = static_field(default=1)   # static: part of the treedef

Leaves are differentiable and can be vmapped; static fields are hashed into
the tree structure (shapes, flags, mesh topology).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import jax

T = TypeVar("T")


def static_field(**kwargs: Any):
    """A dataclass field stored in the pytree structure rather than as a leaf."""
    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata["static"] = True
    return dataclasses.field(metadata=metadata, **kwargs)


def pytree_dataclass(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass and register it as a JAX pytree."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    data_fields, meta_fields = [], []
    for f in dataclasses.fields(cls):
        (meta_fields if f.metadata.get("static", False) else data_fields).append(f.name)
    jax.tree_util.register_dataclass(cls, data_fields=data_fields, meta_fields=meta_fields)
    return cls


def replace(obj: T, **changes: Any) -> T:
    """Return a copy of a pytree dataclass with some fields changed."""
    return dataclasses.replace(obj, **changes)
