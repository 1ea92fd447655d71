"""The public transforms over containers, with ``argnums=`` and ``has_aux=``.

:mod:`dualad.transforms` differentiates a function of ONE array returning ONE array.  This layer
lets ``x`` and ``f(x)`` be pytrees (tuples, lists, dicts of arrays and scalars, see
:mod:`dualad.pytrees`): the leaves of ``x`` are packed into one flat vector, ``f`` is called on
views of it rebuilt into ``x``'s structure, the leaves of ``f(x)`` are packed into one flat output,
the array transform runs, and its result is cut into blocks that take the nested structure back.
Results follow JAX's convention: the Jacobian of an output of structure ``O`` with respect to an
input of structure ``I`` is ``O`` of ``I`` of arrays of shape ``out_leaf.shape + in_leaf.shape``;
a gradient has ``x``'s structure.

When ``x`` is one array and ``f`` returns one array, the array transform runs on ``f`` itself (a
``numba.njit`` function keeps the compiled engine); only a container output costs anything here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import reverse, transforms
from .dual import Carrier, Dual, DualError, check_output, primal
from .pytrees import LEAF, TreeDef, flatten, is_leaf, unflatten

__all__ = [
    "derivative",
    "gradient",
    "jacobian",
    "jvp",
    "vjp",
    "hessian",
    "hvp",
    "value_and_gradient",
    "value_and_jacobian",
    "jacfwd",
    "jacrev",
    "grad",
]


#: transforms' cache of which callable types are Numba dispatchers (filled on first sight).
_NUMBA_TYPES = transforms._numba_types

# --- the packing of one point --------------------------------------------------------------------


class _Packing:
    """How the leaves of a pytree sit in one flat vector: structure, shapes and offsets."""

    __slots__ = ("treedef", "shapes", "offsets", "size")

    def __init__(self, treedef: TreeDef, shapes: list[tuple[int, ...]]) -> None:
        self.treedef = treedef
        self.shapes = shapes
        sizes = [math.prod(s) for s in shapes]
        self.offsets = [0]
        for size in sizes:
            self.offsets.append(self.offsets[-1] + size)
        self.size = self.offsets[-1]

    def pieces(self, flat: Any, trailing: tuple[int, ...] = ()) -> list[Any]:
        """The leaves cut out of ``flat`` (shape ``(size,) + trailing``), each reshaped."""
        return [
            _scalar(flat[a:b].reshape(shape + trailing))
            for a, b, shape in zip(self.offsets, self.offsets[1:], self.shapes)
        ]

    def tree(self, flat: Any, trailing: tuple[int, ...] = ()) -> Any:
        return unflatten(self.treedef, self.pieces(flat, trailing))


def _arr(a: Any) -> Any:
    """``a`` as an array; a Dual or traced array (a result inside another derivative) as is."""
    return a if isinstance(a, Carrier) else np.asarray(a)


def _contig(a: Any) -> Any:
    """A block of a result as its own array (not a view of the whole), Carriers as they are."""
    return a if isinstance(a, Carrier) else np.ascontiguousarray(a)


def _scalar(a: Any) -> Any:
    return a[()] if isinstance(a, np.ndarray) and a.ndim == 0 else a


def _pack(leaves: list[Any], trailing: int = 0) -> Any:
    """The leaves raveled (all but ``trailing`` last axes) and concatenated into one array."""
    if not leaves:
        return np.zeros((0,))
    parts = []
    for leaf in leaves:
        if not isinstance(leaf, Carrier):
            leaf = transforms._as_input(leaf)
        shape = np.shape(primal(leaf))
        keep = shape[len(shape) - trailing :] if trailing else ()
        parts.append(leaf.reshape((-1,) + keep))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def _point(x: Any) -> tuple[Any, _Packing | None]:
    """``x`` itself when it is one leaf, else its leaves packed flat, with the packing."""
    if is_leaf(x):
        return x, None
    if x is None:  # an empty container would give an empty derivative: say what went wrong
        transforms._as_input(x)
    leaves, treedef = flatten(x)
    leaves = [transforms._as_input(leaf) for leaf in leaves]
    if any(np.iscomplexobj(primal(leaf)) for leaf in leaves):
        raise DualError(
            "complex leaves in a container x are not supported (the leaves are packed into one "
            "real or complex vector); differentiate with respect to the complex array on its own"
        )
    packing = _Packing(treedef, [np.shape(primal(leaf)) for leaf in leaves])
    return _pack(leaves), packing


class _Output:
    """What a call of the wrapped function saw: the output's structure and the aux value."""

    __slots__ = ("packing", "aux")

    def __init__(self) -> None:
        self.packing: _Packing | None = None
        self.aux: Any = None


def _aux_value(aux: Any, z: Any) -> Any:
    """``aux`` without the layer of this differentiation (``z`` is the seeded input)."""
    if z.__class__ is Dual:
        tag = z.tag

        def strip(leaf: Any) -> Any:
            return leaf.value if leaf.__class__ is Dual and leaf.tag == tag else leaf

    elif z.__class__ is reverse.Tracer:

        def strip(leaf: Any) -> Any:
            return leaf._value if leaf.__class__ is reverse.Tracer else leaf

    else:
        return aux
    leaves, treedef = flatten(aux)
    return unflatten(treedef, [strip(leaf) for leaf in leaves])


def _wrap(
    f: Callable[..., Any], packing: _Packing | None, out: _Output, has_aux: bool, who: str
) -> Callable[..., Any]:
    """``f`` as a function of one array returning one array, recording what it returned."""
    fun = transforms._python_function(f)

    def g(z: Any, *args: Any) -> Any:
        y = fun(z if packing is None else packing.tree(z), *args)
        if has_aux:
            if not isinstance(y, (tuple, list)) or len(y) != 2:
                raise ValueError(
                    f"{who}(..., has_aux=True) needs f to return a pair (output, aux); it "
                    f"returned {_describe(y)}"
                )
            y, aux = y
            out.aux = _aux_value(aux, z)
        if y is None or isinstance(y, (str, bytes)):
            check_output(y)  # f without a return statement: an error, not an empty derivative
        if is_leaf(y):
            leaves, treedef = [y], LEAF
        else:
            leaves, treedef = flatten(y)
        shapes = [np.shape(primal(leaf)) for leaf in leaves]
        if out.packing is not None and (
            out.packing.treedef != treedef or out.packing.shapes != shapes
        ):
            raise ValueError(
                f"{who}: f returned outputs of different structures on two calls at the same "
                f"point ({out.packing.treedef!r} then {treedef!r}); its output must not depend "
                "on the directions"
            )
        out.packing = _Packing(treedef, shapes)
        return y if treedef is LEAF else _pack(leaves)

    g.__name__ = getattr(fun, "__name__", "f")
    return g


def _describe(y: Any) -> str:
    if isinstance(y, (tuple, list)):
        return f"a {type(y).__name__} of {len(y)} items"
    return f"a {type(y).__name__}" + (f" of shape {np.shape(primal(y))}" if y is not None else "")


def _plain(f: Any, x: Any, has_aux: bool, options: dict[str, Any]) -> bool:
    """True when the array transform takes ``f`` itself: one array x, and the compiled engine
    asked for (``engine="numba"``) or a Numba function (unless ``engine="numpy"``, which runs its
    Python source here, where it may return a container)."""
    engine = options.get("engine", "auto")
    if engine == "numba":
        _check_engine(options, "engine='numba'", f)
        return not has_aux and is_leaf(x)
    return not has_aux and engine != "numpy" and is_leaf(x) and transforms._is_numba_function(f)


def _check_engine(options: dict[str, Any], who: str, f: Any = None) -> None:
    if options.get("engine") != "numba":
        return
    if getattr(f, "_dualad_custom", False):
        raise DualError(
            f"{who}: {getattr(f, '__name__', f)} has a custom derivative rule (da.custom_jvp or "
            "da.custom_vjp), which the compiled engine cannot use: pass engine='auto' or 'numpy'"
        )
    if f is None:
        raise ValueError(
            f"{who}: engine='numba' takes one array x and a function returning one array; "
            "containers (a tuple is one, even of numbers: pass a list or an array for one array "
            "point) and has_aux=True run on the NumPy engine: pass engine='auto' or 'numpy'"
        )


def _value_tree(value: Any, out: _Output) -> Any:
    packing = out.packing
    if packing is None or packing.treedef is LEAF:
        return value
    return packing.tree(_arr(value))


def _blocks(jac: Any, out: _Output, inp: _Packing | None, x_shape: tuple[int, ...]) -> Any:
    """The Jacobian of the packed function cut into the output's structure of x's structure."""
    opack = out.packing
    if (opack is None or opack.treedef is LEAF) and inp is None:
        return jac
    if opack is None or opack.treedef is LEAF:
        assert inp is not None
        jac = _arr(jac)
        lead = jac.shape[: jac.ndim - 1]
        blocks = [
            _scalar(_contig(jac[..., a:b]).reshape(lead + shape))
            for a, b, shape in zip(inp.offsets, inp.offsets[1:], inp.shapes)
        ]
        return unflatten(inp.treedef, blocks)
    in_shapes = [x_shape] if inp is None else inp.shapes
    in_offsets = [0, math.prod(x_shape)] if inp is None else inp.offsets
    jac2 = np.reshape(jac, (opack.size, in_offsets[-1]))
    rows = []
    for a, b, oshape in zip(opack.offsets, opack.offsets[1:], opack.shapes):
        row = [
            _scalar(_contig(jac2[a:b, c:d]).reshape(oshape + ishape))
            for c, d, ishape in zip(in_offsets, in_offsets[1:], in_shapes)
        ]
        rows.append(row[0] if inp is None else unflatten(inp.treedef, row))
    return unflatten(opack.treedef, rows)


def _tree_of_trees(h: Any, inp: _Packing) -> Any:
    """A Hessian of the packed point as x's structure of x's structure."""
    h2 = np.reshape(h, (inp.size, inp.size))
    rows = []
    for a, b, s in zip(inp.offsets, inp.offsets[1:], inp.shapes):
        row = [
            _scalar(_contig(h2[a:b, c:d]).reshape(s + t))
            for c, d, t in zip(inp.offsets, inp.offsets[1:], inp.shapes)
        ]
        rows.append(unflatten(inp.treedef, row))
    return unflatten(inp.treedef, rows)


# --- the transforms ------------------------------------------------------------------------------


def value_and_jacobian(
    f: Callable[..., Any], x: Any, *, has_aux: bool = False, **options: Any
) -> tuple[Any, Any]:
    """``f(x)`` and its Jacobian from the same passes; ``x`` and ``f(x)`` may be containers.

    For one array ``x`` and one array output the Jacobian has shape ``f(x).shape + x.shape``.
    For containers (tuples, lists, dicts, nested; see :mod:`dualad.pytrees` for which lists are
    arrays) it is the output's structure holding x's structure holding arrays of shape
    ``out_leaf.shape + x_leaf.shape``, as in JAX.  With ``has_aux=True``, ``f`` returns
    ``(output, aux)`` and the result is ``((value, aux), jacobian)``.  The options (``mode``,
    ``chunk_size``, ``args``, ``engine``) are those of
    :func:`dualad.transforms.value_and_jacobian`.
    """
    if _plain(f, x, has_aux, options):
        return transforms.value_and_jacobian(f, x, **options)
    value, jac, out, _ = _value_and_jacobian(f, x, has_aux, options, "value_and_jacobian")
    return ((value, out.aux) if has_aux else value), jac


def _value_and_jacobian(
    f: Any, x: Any, has_aux: bool, options: dict[str, Any], who: str
) -> tuple[Any, Any, _Output, _Packing | None]:
    point, inp = _point(x)
    _check_engine(options, who, f)
    if inp is not None or has_aux:
        _check_engine(options, who)
    out = _Output()
    g = _wrap(f, inp, out, has_aux, who)
    value, jac = transforms.value_and_jacobian(g, point, **options)
    x_shape = np.shape(primal(point))
    return _value_tree(value, out), _blocks(jac, out, inp, x_shape), out, inp


def jacobian(
    f: Callable[..., Any],
    x: Any,
    *,
    mode: str = "auto",
    chunk_size: int | None = None,
    args: tuple[Any, ...] = (),
    engine: str = "auto",
    has_aux: bool = False,
) -> Any:
    """Jacobian of ``f`` at ``x``: shape ``f(x).shape + x.shape``, or nested for containers.

    See :func:`value_and_jacobian`; with ``has_aux=True`` the result is ``(jacobian, aux)``.

    Examples
    --------
    >>> import numpy as np, dualad as da
    >>> da.jacobian(lambda x: x**2, np.array([1.0, 2.0]))
    array([[2., 0.],
           [0., 4.]])
    >>> da.jacobian(lambda a: (a * a, a), 2.0)         # a tuple output: a tuple of Jacobians
    (np.float64(4.0), np.float64(1.0))
    """
    if x.__class__ is np.ndarray and _NUMBA_TYPES.get(f.__class__) and engine != "numpy":
        if not has_aux:  # the compiled engine's hot path (a Lorenz Jacobian takes ~1.5 us)
            return transforms.jacobian(
                f, x, mode=mode, chunk_size=chunk_size, args=args, engine=engine
            )
    options = {"mode": mode, "chunk_size": chunk_size, "args": args, "engine": engine}
    if _plain(f, x, has_aux, options):
        return transforms.jacobian(f, x, **options)
    _, jac, out, _ = _value_and_jacobian(f, x, has_aux, options, "jacobian")
    return (jac, out.aux) if has_aux else jac


def _scalar_output(out: _Output, who: str) -> None:
    if out.packing is not None and out.packing.treedef is not LEAF:
        raise ValueError(
            f"{who} needs f to return a scalar; it returned a container of structure "
            f"{out.packing.treedef!r}. Use da.jacobian for several outputs"
            + (
                ", or has_aux=True when the other items are auxiliary data."
                if who == "gradient"
                else "."
            )
        )


def value_and_gradient(
    f: Callable[..., Any], x: Any, *, has_aux: bool = False, **options: Any
) -> tuple[Any, Any]:
    """``f(x)`` and its gradient (x's structure) for a scalar-valued ``f``.

    With ``has_aux=True``, ``f`` returns ``(scalar, aux)`` and the result is
    ``((value, aux), gradient)``, as JAX's ``value_and_grad``.  Options as for
    :func:`dualad.transforms.value_and_gradient`.
    """
    if _plain(f, x, has_aux, options):
        return transforms.value_and_gradient(f, x, **options)
    point, inp = _point(x)
    _check_engine(options, "value_and_gradient", f)
    if inp is not None or has_aux:
        _check_engine(options, "value_and_gradient")
    out = _Output()
    g = _wrap(f, inp, out, has_aux, "gradient")

    def scalar_g(z: Any, *args: Any) -> Any:
        y = g(z, *args)
        _scalar_output(out, "gradient")
        return y

    value, grad_ = transforms.value_and_gradient(scalar_g, point, **options)
    if inp is not None:
        grad_ = inp.tree(_arr(grad_))
    return ((value, out.aux) if has_aux else value), grad_


def gradient(f: Callable[..., Any], x: Any, *, has_aux: bool = False, **options: Any) -> Any:
    """Gradient of a scalar-valued ``f`` at ``x``, with ``x``'s shape or structure.

    With ``has_aux=True`` the result is ``(gradient, aux)``.  See :func:`value_and_gradient`.

    Examples
    --------
    >>> import numpy as np, dualad as da
    >>> da.gradient(lambda x: np.sum(x**3), np.array([1.0, 2.0]))
    array([ 3., 12.])
    >>> da.gradient(lambda p: p["w"] * p["b"], {"w": 2.0, "b": 3.0})
    {'b': np.float64(2.0), 'w': np.float64(3.0)}
    """
    if has_aux:
        (_, aux), grad_ = value_and_gradient(f, x, has_aux=True, **options)
        return grad_, aux
    return value_and_gradient(f, x, **options)[1]


def derivative(f: Callable[..., Any], x: Any, **options: Any) -> Any:
    """Derivative of ``f`` at a scalar ``x``; the shape (or structure) of ``f(x)``.

    Examples
    --------
    >>> import numpy as np, dualad as da
    >>> float(da.derivative(np.sin, 0.0))
    1.0
    """
    if x is None:
        transforms._as_input(x)  # its error: not None; pass a number
    if not is_leaf(x):
        raise ValueError(
            f"derivative needs a scalar x; got a container of structure {flatten(x)[1]!r}. "
            "Use da.jacobian (or da.gradient) for containers."
        )
    if _plain(f, x, False, options):
        return transforms.derivative(f, x, **options)
    if np.ndim(primal(x)) != 0:
        return transforms.derivative(f, x, **options)  # its error names the shape
    return jacobian(f, x, **options)


def _directions(v: Any, inp: _Packing | None, who: str, name: str = "v", of: str = "x") -> Any:
    """``v`` (x's structure) packed flat, with one trailing direction axis if its leaves have."""
    if v is None:
        transforms._as_input(v)  # its error: not None; pass a number
    if inp is None:
        if not is_leaf(v):
            raise ValueError(
                f"{who}: {name} must have the structure of {of} (one array); got a container of "
                f"structure {flatten(v)[1]!r}"
            )
        return v
    leaves, treedef = flatten(v)
    if treedef != inp.treedef:
        raise ValueError(
            f"{who}: {name} must have the structure of {of} {inp.treedef!r}; got {treedef!r}"
        )
    leaves = [transforms._as_input(leaf) for leaf in leaves]
    shapes = [np.shape(primal(leaf)) for leaf in leaves]
    if shapes == inp.shapes:
        return _pack(leaves)
    ks = {s[-1] for s, t in zip(shapes, inp.shapes) if len(s) == len(t) + 1 and s[:-1] == t}
    if len(ks) == 1 and all(
        len(s) == len(t) + 1 and s[:-1] == t for s, t in zip(shapes, inp.shapes)
    ):
        return _pack(leaves, trailing=1)
    raise ValueError(
        f"{who}: the leaves of {name} must have the shapes of {of}'s leaves {inp.shapes}, or each "
        f"those + (k,) with one k; got {shapes}"
    )


def jvp(f: Callable[..., Any], x: Any, v: Any, **options: Any) -> tuple[Any, Any]:
    """``(f(x), J(x) v)``; ``v`` has x's structure, the tangent has f(x)'s.

    Each leaf of ``v`` has its x leaf's shape (one direction) or that shape plus a trailing axis
    of ``k`` directions (the same ``k`` throughout).  Options as for
    :func:`dualad.transforms.jvp`.
    """
    if _plain(f, x, False, options):
        return transforms.jvp(f, x, v, **options)
    point, inp = _point(x)
    _check_engine(options, "jvp", f)
    if inp is not None:
        _check_engine(options, "jvp")
    directions = _directions(v, inp, "jvp")
    out = _Output()
    value, tangent = transforms.jvp(_wrap(f, inp, out, False, "jvp"), point, directions, **options)
    if out.packing is None or out.packing.treedef is LEAF:
        return value, tangent
    trailing = np.shape(tangent)[1:]
    return _value_tree(value, out), out.packing.tree(_arr(tangent), trailing)


def vjp(f: Callable[..., Any], x: Any, **options: Any) -> tuple[Any, Callable[[Any], Any]]:
    """``(f(x), pullback)`` by reverse mode; ``pullback(u)`` takes ``u`` of f(x)'s structure.

    The pullback returns ``u^T J`` with x's structure; each leaf of ``u`` may carry a trailing
    axis of ``k`` cotangents.  Options as for :func:`dualad.transforms.vjp`.
    """
    if _plain(f, x, False, options):  # compiled reverse mode takes f itself, one array
        return transforms.vjp(f, x, **options)
    point, inp = _point(x)
    out = _Output()
    value, inner = transforms.vjp(_wrap(f, inp, out, False, "vjp"), point, **options)
    opack = out.packing

    def pullback(u: Any) -> Any:
        if opack is None or opack.treedef is LEAF:
            u_flat = _directions(u, None, "vjp's pullback", "u", "f(x)")
        else:
            u_flat = _directions(u, opack, "vjp's pullback", "u", "f(x)")
        g = inner(u_flat)
        if inp is None:
            return g
        return inp.tree(_arr(g), np.shape(g)[1:])

    return _value_tree(value, out), pullback


def _scalar_function(f: Any, inp: _Packing | None, who: str) -> Callable[..., Any]:
    """``f`` packed as for :func:`_wrap`, refusing a container output (``who`` needs a scalar)."""
    out = _Output()
    g = _wrap(f, inp, out, False, who)

    def scalar_g(z: Any, *args: Any) -> Any:
        y = g(z, *args)
        _scalar_output(out, who)
        return y

    scalar_g.__name__ = g.__name__
    return scalar_g


def hessian(f: Callable[..., Any], x: Any, **options: Any) -> Any:
    """Hessian of a scalar-valued ``f``: shape ``x.shape + x.shape``, or x's structure of x's
    structure for a container ``x``.  Options as for :func:`dualad.transforms.hessian`."""
    if _plain(f, x, False, options):
        return transforms.hessian(f, x, **options)
    point, inp = _point(x)
    h = transforms.hessian(_scalar_function(f, inp, "hessian"), point, **options)
    return h if inp is None else _tree_of_trees(h, inp)


def hvp(f: Callable[..., Any], x: Any, v: Any, **options: Any) -> Any:
    """Hessian-vector product ``H(x) v`` of a scalar-valued ``f``, with x's structure."""
    if _plain(f, x, False, options):
        return transforms.hvp(f, x, v, **options)
    point, inp = _point(x)
    directions = _directions(v, inp, "hvp")
    h = transforms.hvp(_scalar_function(f, inp, "hvp"), point, directions, **options)
    return h if inp is None else inp.tree(_arr(h), np.shape(h)[1:])


# --- function transforms: argnums ----------------------------------------------------------------


def _check_argnums(argnums: Any, engine: str = "auto") -> int | tuple[int, ...]:
    """``argnums`` as an int or a tuple of distinct ints, or a TypeError/ValueError."""
    if engine == "numba" and argnums != 0:
        raise ValueError(
            f"engine='numba' differentiates with respect to the first argument only; got "
            f"argnums={argnums!r}: pass engine='auto' (the NumPy engine runs f's source)"
        )
    if isinstance(argnums, (int, np.integer)) and not isinstance(argnums, bool):
        if argnums < 0:
            raise ValueError(f"argnums must be non-negative; got {argnums}")
        return int(argnums)
    if isinstance(argnums, Sequence) and not isinstance(argnums, str):
        items = tuple(argnums)
        if not items or not all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool) and i >= 0 for i in items
        ):
            raise ValueError(
                f"argnums must be an int or a non-empty tuple of non-negative ints; got {argnums!r}"
            )
        if len(set(items)) != len(items):
            raise ValueError(f"argnums must not repeat a position; got {argnums!r}")
        return tuple(int(i) for i in items)
    raise TypeError(f"argnums must be an int or a tuple of ints; got {argnums!r}")


def _split_args(
    f: Any, argnums: int | tuple[int, ...], call_args: tuple[Any, ...], who: str
) -> tuple[Any, Callable[..., Any], tuple[Any, ...]]:
    """(the differentiated point, f as a function of it, the other args) for one call."""
    positions = (argnums,) if isinstance(argnums, int) else argnums
    if max(positions) >= len(call_args):
        raise ValueError(
            f"{who}: argnums={argnums!r} asks for positional argument {max(positions)}, but the "
            f"function was called with {len(call_args)} positional argument(s)"
        )
    if argnums == 0:
        return call_args[0], f, call_args[1:]
    fun = transforms._python_function(f)
    x = call_args[argnums] if isinstance(argnums, int) else tuple(call_args[i] for i in argnums)

    def h(z: Any) -> Any:
        full = list(call_args)
        if isinstance(argnums, int):
            full[argnums] = z
        else:
            for i, zi in zip(argnums, z):
                full[i] = zi
        return fun(*full)

    h.__name__ = getattr(fun, "__name__", "f")
    return x, h, ()


class _Transformed:
    """What :func:`jacfwd`, :func:`jacrev`, :func:`grad` and :func:`value_and_grad` return: an
    object rather than a closure, so that it pickles whenever ``f`` does (a module-level
    function), e.g. into ``multiprocessing`` workers."""

    def __init__(self, api: Callable[..., Any], kind: str, f: Any, argnums: Any, **options: Any):
        argnums = _check_argnums(argnums, options["engine"])
        self._api, self._f, self._argnums, self._kind, self._options = (
            api, f, argnums, kind, options
        )  # fmt: skip
        name = getattr(f, "__name__", "f")
        self.__name__ = self.__qualname__ = f"{kind}({name})"
        self.__doc__ = f"The {kind} of {name}, as a function of f's arguments."

    def __call__(self, *call_args: Any) -> Any:
        x, h, rest = _split_args(self._f, self._argnums, call_args, self._kind)
        return self._api(h, x, args=rest, **self._options)

    def __repr__(self) -> str:
        return f"<dualad {self.__name__}>"


def jacfwd(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    has_aux: bool = False,
    chunk_size: int | None = None,
    engine: str = "auto",
) -> Callable[..., Any]:
    """``f``'s Jacobian by forward mode as a function of f's arguments (SciPy's ``jac=``).

    ``jac(x, *args)`` differentiates with respect to positional argument ``argnums`` (an int), or
    to several (a tuple: the result is then a tuple, one entry per position); the other arguments
    are passed through.  ``has_aux=True``: ``f`` returns ``(output, aux)``, ``jac`` returns
    ``(jacobian, aux)``.
    """
    return _Transformed(
        jacobian, "jacfwd", f, argnums,
        has_aux=has_aux, mode="forward", chunk_size=chunk_size, engine=engine,
    )  # fmt: skip


def jacrev(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    has_aux: bool = False,
    chunk_size: int | None = None,
    engine: str = "auto",
) -> Callable[..., Any]:
    """``f``'s Jacobian by reverse mode as a function of f's arguments; see :func:`jacfwd`."""
    return _Transformed(
        jacobian, "jacrev", f, argnums,
        has_aux=has_aux, mode="reverse", chunk_size=chunk_size, engine=engine,
    )  # fmt: skip


def grad(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    has_aux: bool = False,
    mode: str = "auto",
    chunk_size: int | None = None,
    engine: str = "auto",
) -> Callable[..., Any]:
    """``f``'s gradient as a function of f's arguments, e.g. for ``minimize(jac=)``.

    ``argnums`` and ``has_aux`` as for :func:`jacfwd`; ``g(*args)`` returns the gradient with
    respect to the chosen argument(s) (``(gradient, aux)`` with ``has_aux=True``).
    """
    return _Transformed(
        gradient, "grad", f, argnums,
        has_aux=has_aux, mode=mode, chunk_size=chunk_size, engine=engine,
    )  # fmt: skip


def value_and_grad(
    f: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    *,
    has_aux: bool = False,
    mode: str = "auto",
    chunk_size: int | None = None,
    engine: str = "auto",
) -> Callable[..., Any]:
    """``f``'s value and gradient as one function of f's arguments (JAX's ``value_and_grad``).

    Returns ``(value, gradient)``, or ``((value, aux), gradient)`` with ``has_aux=True``.
    """
    return _Transformed(
        value_and_gradient, "value_and_grad", f, argnums,
        has_aux=has_aux, mode=mode, chunk_size=chunk_size, engine=engine,
    )  # fmt: skip
