"""Containers of arrays ("pytrees"): flatten them to a list of leaves and build them back.

A pytree is a tuple (namedtuples included), a list or a dict whose items are pytrees, ``None``
(a container with no leaves), or a leaf: an array, a scalar, a Dual or a traced array.

One exception keeps dualad's older convention that ``[1.0, 2.0]`` is a point of R^2: a list whose
items are all plain numbers (or, recursively, such lists, as ``[[1, 2], [3, 4]]``) is ONE leaf, the
array NumPy makes of it.  A list holding an array, a Dual, a tuple, a dict or ``None`` is a
container.  Tuples and dicts are always containers.

Dict keys are taken in sorted order (insertion order when they do not sort), so two dicts with the
same keys have the same structure.  This module knows nothing of derivatives.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["TreeDef", "flatten", "unflatten", "is_leaf", "LEAF"]

_NUMBER_TYPES = (numbers.Number, np.generic)


def _numbers_only(items: list[Any]) -> bool:
    """True for a list (of lists) of plain numbers: the array-like form of one leaf."""
    for item in items:
        if isinstance(item, list):
            if not _numbers_only(item):
                return False
        elif not isinstance(item, _NUMBER_TYPES):
            return False
    return True


def is_leaf(obj: Any) -> bool:
    """True when ``obj`` is one leaf (see the module docstring for the list rule)."""
    if obj is None or isinstance(obj, (tuple, dict)):
        return False
    if isinstance(obj, list):
        return _numbers_only(obj)
    return True


class TreeDef:
    """The structure of a pytree without its leaves; equal structures compare equal."""

    __slots__ = ("kind", "node_type", "keys", "children", "num_leaves")

    def __init__(
        self, kind: str, node_type: Any, keys: tuple[Any, ...], children: tuple[TreeDef, ...]
    ) -> None:
        self.kind = kind  # "leaf", "none", "tuple", "list" or "dict"
        self.node_type = node_type
        self.keys = keys
        self.children = children
        self.num_leaves = 1 if kind == "leaf" else sum(c.num_leaves for c in children)

    @property
    def is_leaf(self) -> bool:
        return self.kind == "leaf"

    def _key(self) -> tuple[Any, ...]:
        return (self.kind, self.node_type, self.keys, self.children)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TreeDef) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.kind, self.node_type, self.keys, self.children))

    def __repr__(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        inner = [repr(c) for c in self.children]
        if self.kind == "dict":
            return "{" + ", ".join(f"{k!r}: {v}" for k, v in zip(self.keys, inner)) + "}"
        if self.kind == "list":
            return "[" + ", ".join(inner) + "]"
        if self.node_type is not tuple:
            return f"{self.node_type.__name__}(" + ", ".join(inner) + ")"
        return "(" + ", ".join(inner) + (",)" if len(inner) == 1 else ")")


LEAF = TreeDef("leaf", None, (), ())
_NONE = TreeDef("none", None, (), ())


def _dict_keys(d: dict[Any, Any]) -> tuple[Any, ...]:
    try:
        return tuple(sorted(d))
    except TypeError:
        return tuple(d)


def flatten(tree: Any) -> tuple[list[Any], TreeDef]:
    """The leaves of ``tree`` in order (tuple/list order, sorted dict keys) and its structure."""
    leaves: list[Any] = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree: Any, leaves: list[Any]) -> TreeDef:
    if tree is None:
        return _NONE
    if isinstance(tree, tuple):
        children = tuple(_flatten(item, leaves) for item in tree)
        return TreeDef("tuple", type(tree), (), children)
    if isinstance(tree, dict):
        keys = _dict_keys(tree)
        children = tuple(_flatten(tree[k], leaves) for k in keys)
        return TreeDef("dict", type(tree), keys, children)
    if isinstance(tree, list) and not _numbers_only(tree):
        children = tuple(_flatten(item, leaves) for item in tree)
        return TreeDef("list", list, (), children)
    leaves.append(tree)
    return LEAF


def unflatten(treedef: TreeDef, leaves: Any) -> Any:
    """The pytree of structure ``treedef`` holding ``leaves`` (an iterable, in flatten's order)."""
    it = iter(leaves)
    tree = _build(treedef, it)
    if next(it, _END) is not _END:
        raise ValueError(f"too many leaves for the structure {treedef!r}")
    return tree


_END = object()


def _build(treedef: TreeDef, it: Any) -> Any:
    kind = treedef.kind
    if kind == "leaf":
        leaf = next(it, _END)
        if leaf is _END:
            raise ValueError("too few leaves for the structure")
        return leaf
    if kind == "none":
        return None
    children = [_build(c, it) for c in treedef.children]
    if kind == "dict":
        return treedef.node_type(zip(treedef.keys, children))
    if kind == "list":
        return children
    if treedef.node_type is not tuple and hasattr(treedef.node_type, "_fields"):
        return treedef.node_type(*children)  # a namedtuple
    return treedef.node_type(children)


def tree_map(fn: Any, tree: Any) -> Any:
    """``tree`` with ``fn`` applied to every leaf."""
    leaves, treedef = flatten(tree)
    return unflatten(treedef, [fn(leaf) for leaf in leaves])


def leaf_shapes(leaves: list[Any]) -> list[tuple[int, ...]]:
    return [np.shape(leaf) for leaf in leaves]
