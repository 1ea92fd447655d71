"""Opt-in promotion of float allocations, so that library code allocating ``np.empty(n)`` compiles.

Library functions often allocate their outputs as ``np.empty(n)`` or ``np.zeros((n, 3))``:
float64 arrays, into which a Dual cannot be written without dropping its derivative (dualad
refuses that).  :func:`promote` rewrites such a function's own source once: each float
``np.empty``/``zeros``/``ones``/``full``/``eye``/``identity`` call, and each ``np.zeros_like``
(``empty_like``, ``ones_like``, ``full_like``) of a float array, becomes an allocation that
follows the function's first argument, Duals when it holds Duals and float64 otherwise, as
``np.zeros(n, dtype=x.dtype)`` does.  Nothing else changes, and the rewritten function computes
the same floats.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import types

from ..dual import DualError
from .arrays import _new_dual_array
from .dualtypes import DualArrayType, DualType, overload_first

__all__ = ["promote"]

#: Allocations that are rewritten, with the parameters of each (all but ``like``, which is added).
_FORMS = {
    "empty": "shape", "zeros": "shape", "ones": "shape", "full": "shape, fill_value",
    "eye": "shape", "identity": "shape", "empty_like": "shape", "zeros_like": "shape",
    "ones_like": "shape", "full_like": "shape, fill_value",
}  # fmt: skip


def _allocator(form: str) -> Callable[..., Any]:
    """``promoted_<form>(..., like)``: ``np.<form>(...)`` of float64, or of Duals like ``like``."""
    params = _FORMS[form]
    env = {"np": np, "__name__": __name__}  # a module, so promoted functions can be cached
    exec(f"def allocate({params}, like):\n    return np.{form}({params})\n", env)  # noqa: S102
    allocate = env["allocate"]
    allocate.__name__ = f"promoted_{form}"

    def select(shape, fill_value, like):  # noqa: ANN001, ANN202
        if not isinstance(like, (DualType, DualArrayType)) or isinstance(fill_value, DualType):
            call = f"np.{form}({params})"
            if form.endswith("_like") and not isinstance(shape, DualArrayType):
                call = call[:-1] + ", dtype=np.float64)"  # a float array's shape, float64 data
            return eval(f"lambda {params}, like: {call}", {"np": np})  # noqa: S307
        fill = ", fill_value" if "fill_value" in params else ""
        if form.endswith("_like"):
            if isinstance(shape, DualArrayType):
                values = f"np.{form}(shape.value{fill})"
            else:
                values = f"np.{form}(shape{fill}, dtype=np.float64)"
        elif form in ("eye", "identity"):
            values = f"np.{form}(shape)"
        else:
            lead = "(shape,)" if isinstance(shape, types.Integer) else "shape"
            values = f"np.{form}({lead}{fill})"
        return _new_dual_array(f"{params}, like", values, "zeros", like.K)

    if "fill_value" in params:
        typer = select
    else:
        typer = lambda shape, like: select(shape, None, like)  # noqa: E731
    overload_first(allocate)(typer)
    return allocate


_ALLOCATORS = {form: _allocator(form) for form in _FORMS}


def _float_dtype(node: ast.AST | None, np_names: set[str]) -> bool:
    """True for no dtype, ``float``, ``np.float64`` or ``"float64"``."""
    if node is None:
        return True
    if isinstance(node, ast.Name) and node.id == "float":
        return True
    if isinstance(node, ast.Constant) and node.value in ("float64", "f8", "float"):
        return True
    return (
        isinstance(node, ast.Attribute)
        and node.attr in ("float64", "double")
        and isinstance(node.value, ast.Name)
        and node.value.id in np_names
    )


class _Promote(ast.NodeTransformer):
    def __init__(self, np_names: set[str], direct: dict[str, str], like: str) -> None:
        self.np_names, self.direct, self.like, self.count = np_names, direct, like, 0

    def visit_Call(self, node: ast.Call) -> ast.AST:  # noqa: N802 - ast's protocol
        self.generic_visit(node)
        fn = node.func
        fill = None
        if isinstance(fn, ast.Attribute) and fn.attr in _FORMS:
            if isinstance(fn.value, ast.Name) and fn.value.id in self.np_names:
                fill = fn.attr
        elif isinstance(fn, ast.Name) and fn.id in self.direct:
            fill = self.direct[fn.id]
        arity = len(_FORMS[fill].split(",")) if fill else 0
        if fill is None or len(node.args) not in (arity, arity + 1):
            return node
        dtype = node.args[arity] if len(node.args) > arity else None
        for kw in node.keywords:
            if kw.arg == "dtype":
                dtype = kw.value
            elif kw.arg == "M" or (kw.arg == "k" and fill == "eye"):
                return node  # a rectangular or shifted eye: left as written
            elif fill in ("eye", "identity") or kw.arg != "fill_value":
                return node  # order=, like=: left as written
        if fill in ("eye", "identity") and len(node.args) > 1:
            return node  # np.eye(n, m): left as written
        if not _float_dtype(dtype, self.np_names):
            return node
        self.count += 1
        call = ast.Call(
            func=ast.Name(id=f"__dualad_promoted_{fill}", ctx=ast.Load()),
            args=[*node.args[:arity], ast.Name(id=self.like, ctx=ast.Load())],
            keywords=[],
        )
        return ast.copy_location(call, node)


def promote(f: Callable[..., Any]) -> Any:
    """``f`` (a ``numba.njit`` function or a plain one) with its float allocations following its
    first argument, as a new ``numba.njit`` function to differentiate instead of ``f``.

    ``np.empty(n)``, ``np.zeros((n, 3))``, ``np.ones(shape, dtype=np.float64)``, ``np.full(shape,
    c)``, ``np.eye(n)``, ``np.identity(n)`` and ``np.zeros_like(a)`` (``empty_like``,
    ``ones_like``, ``full_like``) of a float array, in ``f``'s own body, hold Duals when the first
    argument does (helpers ``f`` calls are not rewritten), so a
    library function whose output is allocated that way compiles for Duals unchanged.  On float
    input it computes exactly what ``f`` does.

    Examples
    --------
    >>> import numba, numpy as np, dualad as da
    >>> from dualad.numba import promote
    >>> @numba.njit
    ... def squares(x):
    ...     out = np.empty(x.size)
    ...     for i in range(x.size):
    ...         out[i] = x[i] * x[i]
    ...     return out
    >>> da.jacobian(promote(squares), np.array([1.0, 2.0])).tolist()
    [[2.0, 0.0], [0.0, 4.0]]
    """
    source_fn = getattr(f, "py_func", f)
    name = getattr(source_fn, "__name__", "f")
    if source_fn.__code__.co_freevars:
        raise DualError(
            f"dualad.numba.promote cannot rewrite {name}: it reads variables of an enclosing "
            f"function ({', '.join(source_fn.__code__.co_freevars)}); define it at module level"
        )
    try:
        lines, first_line = inspect.getsourcelines(source_fn)
    except (OSError, TypeError) as exc:
        raise DualError(f"dualad.numba.promote needs the source of {name} ({exc})") from None
    tree = ast.parse(textwrap.dedent("".join(lines)))
    fdef = tree.body[0]
    if not isinstance(fdef, ast.FunctionDef) or not fdef.args.args:
        raise DualError(f"dualad.numba.promote needs a def with a first argument, not {name}")
    fdef.decorator_list = []
    namespace = dict(source_fn.__globals__)
    np_names = {k for k, v in namespace.items() if v is np}
    direct = {k: fill for k, v in namespace.items() for fill in _FORMS if v is getattr(np, fill)}
    _Promote(np_names, direct, fdef.args.args[0].arg).visit(tree)
    ast.fix_missing_locations(tree)
    ast.increment_lineno(tree, first_line - 1)
    for fill, allocate in _ALLOCATORS.items():
        namespace[f"__dualad_promoted_{fill}"] = allocate
    exec(compile(tree, inspect.getsourcefile(source_fn) or "<promoted>", "exec"), namespace)  # noqa: S102
    rebuilt = namespace[fdef.name]
    rebuilt.__defaults__ = source_fn.__defaults__
    namespace[fdef.name] = source_fn  # the module's name keeps meaning the original (recursion)
    return numba.njit(rebuilt)
