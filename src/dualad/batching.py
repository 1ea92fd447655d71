"""``da.vmap``: map a function over one axis of its arguments and stack the results.

This is a loop over the batch on the NumPy engine, not a vectorising transform: ``f`` runs once
per batch element, on Duals or traced arrays as well as on plain arrays, so ``vmap`` composes
with every transform in both orders (``vmap(grad(f))`` gives per-example gradients,
``jacobian(vmap(f))`` the Jacobian of the batched map).  It saves writing the loop, the slicing
and the stacking, with JAX's ``in_axes`` / ``out_axes`` conventions, over containers too.  For
speed over many points use vectorised NumPy code, or :func:`dualad.batch_jacobian` for a Numba
function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .dual import primal
from .pytrees import flatten, unflatten

__all__ = ["vmap"]


def _check_axis(axis: Any, what: str) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        return int(axis)
    raise TypeError(f"vmap: {what} must be an int or None (per argument); got {axis!r}")


def _take(a: Any, i: int, axis: int) -> Any:
    ndim = np.ndim(primal(a))
    ax = axis + ndim if axis < 0 else axis
    return a[(slice(None),) * ax + (i,)]


def vmap(
    f: Callable[..., Any], in_axes: int | None | tuple[Any, ...] = 0, out_axes: int = 0
) -> Callable[..., Any]:
    """``f`` mapped over axis ``in_axes`` of its positional arguments, results stacked.

    ``in_axes`` is an int (every argument), or a tuple with one int or None (not mapped, passed
    whole) per positional argument; an argument that is a container is mapped over that axis of
    each of its leaves.  The outputs (arrays, or containers of them) are stacked along
    ``out_axes``.  A loop: see the module docstring.

    Examples
    --------
    >>> import numpy as np, dualad as da
    >>> def loss(w, x):
    ...     return np.sum((w * x) ** 2)
    >>> xs = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> da.vmap(da.grad(loss), in_axes=(None, 0))(np.array([1.0, 1.0]), xs)   # per example
    array([[2., 0.],
           [0., 8.]])
    """
    out_axis = _check_axis(out_axes, "out_axes")
    if out_axis is None:
        raise TypeError("vmap: out_axes must be an int; got None")
    if not isinstance(in_axes, tuple):
        _check_axis(in_axes, "in_axes")

    def mapped(*args: Any) -> Any:
        if isinstance(in_axes, tuple):
            if len(in_axes) != len(args):
                raise ValueError(
                    f"vmap: in_axes has {len(in_axes)} entries but the function was called with "
                    f"{len(args)} positional argument(s)"
                )
            axes = [_check_axis(ax, "in_axes") for ax in in_axes]
        else:
            axes = [in_axes] * len(args)  # type: ignore[list-item]
        flat_args = []
        sizes = set()
        for a, ax in zip(args, axes):
            leaves, treedef = flatten(a)
            flat_args.append((leaves, treedef, ax))
            if ax is not None:
                for leaf in leaves:
                    shape = np.shape(primal(leaf))
                    if not -len(shape) <= ax < len(shape):
                        raise ValueError(
                            f"vmap: in_axes={ax} is out of range for an argument of shape {shape}"
                        )
                    sizes.add(shape[ax])
        if not sizes:
            raise ValueError("vmap needs at least one argument mapped over an axis (in_axes)")
        if len(sizes) > 1:
            raise ValueError(
                f"vmap: the mapped axes have different sizes {sorted(sizes)}; they must agree"
            )
        (n,) = sizes
        outs = []
        for i in range(n):
            call = [
                a if ax is None else unflatten(treedef, [_take(leaf, i, ax) for leaf in leaves])
                for a, (leaves, treedef, ax) in zip(args, flat_args)
            ]
            outs.append(flatten(f(*call)))
        if not outs:
            raise ValueError("vmap over an axis of length 0: there is no output to stack")
        treedef = outs[0][1]
        for _, other in outs[1:]:
            if other != treedef:
                raise ValueError(
                    f"vmap: f returned outputs of different structures ({treedef!r} and "
                    f"{other!r}) for different batch elements"
                )
        stacked = [
            np.stack([leaves[j] for leaves, _ in outs], axis=out_axis)
            for j in range(len(outs[0][0]))
        ]
        return unflatten(treedef, stacked)

    mapped.__name__ = f"vmap({getattr(f, '__name__', 'f')})"
    return mapped
