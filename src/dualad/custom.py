"""Custom derivatives for whole functions: ``da.custom_jvp`` and ``da.custom_vjp``.

``@da.custom_jvp`` marks a function whose forward-mode derivative is given by a rule
``jvp(primals, tangents) -> (output, tangent_output)``; ``@da.custom_vjp`` one whose reverse-mode
derivative is given by ``fwd(*args) -> (output, residuals)`` and
``bwd(residuals, cotangent) -> tuple of one cotangent per argument``.  The rules see single
directions (tangents of the arguments' shapes), as in JAX.

Neither engine needs to know about them: the decorated function looks at its arguments when it
is called.  With plain values it runs the function.  With Duals (forward mode) of the outermost
differentiation it strips that layer and applies the rule; with traced arrays (reverse mode) it
records one tape node whose pullback applies the rule.  Layers of other, enclosing
differentiations stay in the values the rules compute with, so the rules' own code is
differentiated as usual: a Hessian through a custom_jvp function differentiates its JVP rule.

- custom_jvp, forward mode: the rule runs once for all ``k`` directions of a pass: the tangents
  are Duals of a fresh differentiation whose partials are the ``k`` directions, and the
  tangent output's partials are the ``k`` tangent outputs (the rule is linear in them).
- custom_jvp, reverse mode: the pullback transposes the rule's tangent map by tracing it with the
  reverse engine (one evaluation of the rule per sweep); a rule the reverse engine cannot trace
  raises an error that says to define a custom_vjp.
- custom_vjp, forward mode: the Jacobian's rows come from ``bwd``, one call per output element
  (cheap for the scalar losses custom_vjp is usually written for).
- The compiled (Numba) engine cannot call them: ``engine="numba"`` refuses a custom function,
  and a ``numba.njit`` function that calls one is differentiated on the NumPy engine.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import reverse, transforms
from .containers import _pack
from .dual import Carrier, Dual, DualError, ReverseModeUnsupported, mixed_modes, primal
from .pytrees import flatten, unflatten

__all__ = ["custom_jvp", "custom_vjp"]


def _lead(leaves: list[Any]) -> tuple[str, Any]:
    """Which engine leads among the arguments' leaves: ("dual", tag), ("tracer", tape),
    ("other", None) for another kind of Carrier, or ("plain", None)."""
    tape = None
    dual_tag = -1
    other = False
    for leaf in leaves:
        cls = leaf.__class__
        if cls is reverse.Tracer:
            if tape is not None and leaf._tape is not tape:
                raise reverse._two_tapes()
            tape = leaf._tape
        elif cls is Dual:
            dual_tag = max(dual_tag, leaf.tag)
        elif isinstance(leaf, Carrier):
            other = True
    if dual_tag >= 0:
        if tape is None or dual_tag > tape.level:
            return "dual", dual_tag
        raise mixed_modes()
    if tape is not None:
        return "tracer", tape
    return ("other", None) if other else ("plain", None)


def _name(fun: Any) -> str:
    return getattr(fun, "__name__", repr(fun))


class _Custom:
    """What both decorators share: the wrapped function, its name, and argument handling."""

    #: containers.py refuses engine="numba" for functions that carry this mark
    _dualad_custom = True

    def __init__(self, fun: Callable[..., Any], nondiff_argnums: Any = ()) -> None:
        if not callable(fun):
            raise TypeError(f"{type(self).__name__} decorates a function; got {fun!r}")
        self.fun = fun
        self.nondiff_argnums = _checked_argnums(nondiff_argnums, type(self).__name__)
        functools.update_wrapper(self, fun)

    def _static_split(self, args: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """(the nondiff_argnums arguments, the others), each in order; checked."""
        n = len(args)
        positions = []
        for i in self.nondiff_argnums:
            if not -n <= i < n:
                raise ValueError(
                    f"{_name(self.fun)}: nondiff_argnums={self.nondiff_argnums} names argument "
                    f"{i}, but it was called with {n} positional argument(s)"
                )
            positions.append(i % n)
        static = tuple(args[i] for i in positions)
        leaves, _ = flatten(static) if static else ([], None)
        if any(isinstance(leaf, Carrier) for leaf in leaves):
            raise DualError(
                f"{_name(self.fun)}: an argument listed in nondiff_argnums carries a derivative "
                "being taken; nondiff_argnums arguments are passed through undifferentiated "
                "(static values such as functions, flags or sizes): remove it from "
                "nondiff_argnums, or pass da.primal(value)"
            )
        dynamic = tuple(a for i, a in enumerate(args) if i not in positions)
        return static, dynamic

    def _merge(self, static: tuple[Any, ...], dynamic: tuple[Any, ...]) -> list[Any]:
        """The full argument list again, the static arguments at their positions."""
        n = len(static) + len(dynamic)
        args: list[Any] = list(dynamic)
        for position, value in sorted(zip([i % n for i in self.nondiff_argnums], static)):
            args.insert(position, value)
        return args

    def _split(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[list[Any], Any, str, Any]:
        leaves, treedef = flatten(args)
        kind, lead = _lead(leaves)
        if kwargs and kind != "plain":
            raise TypeError(
                f"{_name(self.fun)} is a {type(self).__name__} function: pass its arguments "
                f"positionally when it is differentiated (got keyword(s) {sorted(kwargs)})"
            )
        return leaves, treedef, kind, lead


def _checked_argnums(nondiff_argnums: Any, who: str) -> tuple[int, ...]:
    """``nondiff_argnums`` as a tuple of distinct ints, or a ValueError saying what was given."""
    if isinstance(nondiff_argnums, (int, np.integer)) and not isinstance(nondiff_argnums, bool):
        nondiff_argnums = (nondiff_argnums,)
    if not isinstance(nondiff_argnums, (tuple, list)) or not all(
        isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in nondiff_argnums
    ):
        raise ValueError(
            f"{who}: nondiff_argnums must be an int or a tuple of ints (positions of arguments "
            f"passed through undifferentiated); got {nondiff_argnums!r}"
        )
    argnums = tuple(int(i) for i in nondiff_argnums)
    if len(set(argnums)) != len(argnums):
        raise ValueError(f"{who}: nondiff_argnums has a repeated position: {argnums}")
    return argnums


def _renamed(fun: Callable[..., Any], like: Callable[..., Any]) -> Callable[..., Any]:
    fun.__name__ = _name(like)
    return fun


# --- custom_jvp ----------------------------------------------------------------------------------


class custom_jvp(_Custom):  # noqa: N801 - named like the decorator it is
    """A function with a forward-mode rule of your own (decorator).

    Define the rule with ``@f.defjvp``: ``rule(primals, tangents)`` receives two tuples, one
    entry per positional argument (tangents of the arguments' shapes), and returns
    ``(f(*primals), tangent of the output)``; the tangent must be linear in ``tangents``.

    ``nondiff_argnums`` (as in JAX): positions of arguments passed through undifferentiated
    (functions, flags, sizes); the rule is then ``rule(*nondiff_args, primals, tangents)`` with
    ``primals`` and ``tangents`` holding the other arguments.  Use it as
    ``functools.partial(da.custom_jvp, nondiff_argnums=(0,))``.

    Examples
    --------
    >>> import numpy as np, dualad as da
    >>> @da.custom_jvp
    ... def log1pexp(x):
    ...     return np.log1p(np.exp(x))
    >>> @log1pexp.defjvp
    ... def log1pexp_jvp(primals, tangents):
    ...     (x,), (t,) = primals, tangents
    ...     return log1pexp(x), t / (1.0 + np.exp(-x))     # no inf / inf for large x
    >>> float(da.derivative(log1pexp, 0.0))
    0.5
    """

    def __init__(self, fun: Callable[..., Any], nondiff_argnums: Any = ()) -> None:
        super().__init__(fun, nondiff_argnums)
        self.jvp_rule: Callable[..., Any] | None = None

    def defjvp(self, rule: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``rule(primals, tangents) -> (output, tangent_output)``; returns ``rule``."""
        if not callable(rule):
            raise TypeError(f"defjvp takes the JVP rule, a function; got {rule!r}")
        self.jvp_rule = rule
        return rule

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves, treedef, kind, lead = self._split(args, kwargs)
        if kind in ("plain", "other"):  # other: e.g. the sparsity tracer follows f itself
            return self.fun(*args, **kwargs)
        if self.jvp_rule is None:
            raise DualError(
                f"{_name(self.fun)} is a custom_jvp function with no rule yet: define one with "
                f"@{_name(self.fun)}.defjvp before differentiating it"
            )
        if self.nondiff_argnums:
            return self._without_static(args)
        if kind == "dual":
            return _jvp_forward(self, leaves, treedef, lead)
        return _jvp_reverse(self, leaves, treedef, lead)

    def _without_static(self, args: tuple[Any, ...]) -> Any:
        """The function and rule of the differentiated arguments only, the others bound."""
        static, dynamic = self._static_split(args)
        rule = self.jvp_rule
        assert rule is not None
        inner = custom_jvp(_renamed(lambda *d: self.fun(*self._merge(static, d)), self.fun))
        inner.defjvp(lambda primals, tangents: rule(*static, primals, tangents))
        return inner(*dynamic)


def _rule_result(custom: Any, result: Any, what: str) -> tuple[Any, Any]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise DualError(
            f"the {what} of {_name(custom.fun)} must return a pair "
            f"(output, {'tangent' if what == 'JVP rule' else 'residuals'}); it returned "
            f"{type(result).__name__}"
        )
    return result[0], result[1]


def _jvp_forward(custom: custom_jvp, leaves: list[Any], treedef: Any, tag: int) -> Any:
    """The outermost layer (``tag``) stripped, the rule applied to all its directions at once."""
    primals = []
    seeds = []  # (position, partials) of the leaves that carry the layer
    k = 1
    for i, leaf in enumerate(leaves):
        if leaf.__class__ is Dual and leaf.tag == tag:
            primals.append(leaf.value)
            seeds.append((i, leaf.partials))
            k = leaf.nderiv
        else:
            primals.append(leaf)
    with transforms._differentiation() as fresh:
        tangents = []
        seeded = dict(seeds)
        for i, p in enumerate(primals):
            dtype = np.result_type(primal(p), np.float32)
            zero = np.zeros(np.shape(primal(p)), dtype=dtype)
            tangents.append(Dual._make(fresh, zero, seeded[i]) if i in seeded else zero)
        out, tout = _rule_result(
            custom,
            custom.jvp_rule(unflatten(treedef, primals), unflatten(treedef, tangents)),  # type: ignore[misc]
            "JVP rule",
        )
        out_leaves, out_def = flatten(out)
        t_leaves, t_def = flatten(tout)
        if t_def != out_def:
            raise DualError(
                f"the JVP rule of {_name(custom.fun)} returned a tangent of structure {t_def!r} "
                f"for an output of structure {out_def!r}; they must match"
            )
        results = []
        for y, t in zip(out_leaves, t_leaves):
            if y.__class__ is Dual and y.tag == fresh:
                raise DualError(
                    f"the JVP rule of {_name(custom.fun)} computed its output from the tangents; "
                    "the output must depend on the primals only"
                )
            _check_closure(custom, y, tag, "JVP rule")
            if not isinstance(y, Carrier):
                y = transforms._as_input(y)
            shape = np.shape(primal(y))
            if np.shape(primal(t)) != shape:
                raise DualError(
                    f"the JVP rule of {_name(custom.fun)} returned a tangent of shape "
                    f"{np.shape(primal(t))} for an output of shape {shape}; they must match"
                )
            if t.__class__ is Dual and t.tag == fresh:
                offset, partials = t.value, t.partials
            else:
                offset, partials = t, None
            if np.any(primal(offset) != 0):
                raise DualError(
                    f"the JVP rule of {_name(custom.fun)} returned a tangent that is not linear in "
                    "the tangents (it is nonzero for zero tangents); dualad needs J(x) @ t"
                )
            if partials is None:
                partials = np.zeros(shape + (k,), dtype=np.result_type(primal(y), np.float32))
            _check_closure(custom, partials, tag, "JVP rule")
            results.append(Dual._make(tag, y, partials))
    return unflatten(out_def, results)


def _check_closure(custom: Any, a: Any, tag: int, what: str) -> None:
    """Refuse a rule's result that carries the derivative being taken (or a later one)."""
    if a.__class__ is Dual and a.tag >= tag:
        raise DualError(
            f"the {what} of {_name(custom.fun)} used a value that carries the derivative being "
            "taken (a variable it closes over, not one of its arguments); pass that value as an "
            "argument of the custom function"
        )


def _jvp_reverse(custom: custom_jvp, leaves: list[Any], treedef: Any, tape: Any) -> Any:
    """A tape node whose pullback is the transpose of the rule's tangent map."""
    values = [leaf._value if leaf.__class__ is reverse.Tracer else leaf for leaf in leaves]
    traced = [i for i, leaf in enumerate(leaves) if leaf.__class__ is reverse.Tracer]
    out = custom.fun(*unflatten(treedef, values))
    out_leaves, out_def = flatten(out)
    shapes = [np.shape(values[i]) for i in traced]
    sizes = [math.prod(s) for s in shapes]

    def tangent_map(t: Any) -> Any:
        tangents = [np.zeros(np.shape(v), dtype=np.result_type(v, np.float32)) for v in values]
        offset = 0
        for i, shape, size in zip(traced, shapes, sizes):
            tangents[i] = t[offset : offset + size].reshape(shape)
            offset += size
        rule_out = custom.jvp_rule(unflatten(treedef, values), unflatten(treedef, tangents))  # type: ignore[misc]
        _, tout = _rule_result(custom, rule_out, "JVP rule")
        t_leaves, t_def = flatten(tout)
        if t_def != out_def:
            raise DualError(
                f"the JVP rule of {_name(custom.fun)} returned a tangent of structure {t_def!r} "
                f"for an output of structure {out_def!r}; they must match"
            )
        return _pack(t_leaves)

    def vjp(ct: Any, payload: Any) -> list[Any]:
        point = np.zeros(sum(sizes), dtype=ct.dtype)
        try:
            linear = reverse.trace(tangent_map, point, (), next(transforms._tags))
            g = linear.pull(ct)
        except ReverseModeUnsupported as error:
            raise ReverseModeUnsupported(
                f"reverse mode through the custom_jvp function {_name(custom.fun)} transposes "
                f"its JVP rule, and the reverse engine cannot trace that rule ({error}); define "
                "a custom_vjp for it, or use mode='forward'"
            ) from error
        grads, offset = [], 0
        for shape, size in zip(shapes, sizes):
            grads.append(g[offset : offset + size].reshape(shape + (ct.shape[-1],)))
            offset += size
        return grads

    return _record_tree(tape, out_leaves, out_def, [leaves[i] for i in traced], vjp)


def _record_tree(
    tape: Any, out_leaves: list[Any], out_def: Any, operands: list[Any], vjp: Any
) -> Any:
    """One tape node for the packed outputs, cut into Tracers of the output's structure."""
    flat_value = _pack([transforms._as_input(y) for y in out_leaves])
    node = reverse._record(tape, flat_value, tuple(operands), vjp, None)
    results, offset = [], 0
    for y in out_leaves:
        shape = np.shape(y)
        size = math.prod(shape)
        results.append(node[offset : offset + size].reshape(shape))
        offset += size
    return unflatten(out_def, results)


# --- custom_vjp ----------------------------------------------------------------------------------


class custom_vjp(_Custom):  # noqa: N801 - named like the decorator it is
    """A function with a reverse-mode rule of your own (decorator).

    Define it with ``f.defvjp(fwd, bwd)``: ``fwd(*args)`` returns ``(f(*args), residuals)`` and
    ``bwd(residuals, cotangent)`` (a cotangent of the output's shape and structure) returns a
    tuple with one cotangent per positional argument.  Forward mode uses ``bwd`` too, one call
    per output element.

    ``bwd`` must be linear in the cotangent (it is ``ct @ J``), else forward and reverse mode
    disagree.

    ``nondiff_argnums`` (as in JAX): positions of arguments passed through undifferentiated;
    ``fwd`` takes all the arguments, ``bwd`` is ``bwd(*nondiff_args, residuals, ct)`` and returns
    cotangents for the other arguments only.

    Examples
    --------
    >>> import numpy as np, dualad as da
    >>> @da.custom_vjp
    ... def safe_norm(x):                      # gradient 0 at x = 0, not NaN
    ...     return np.sqrt(np.sum(x * x))
    >>> def fwd(x):
    ...     y = safe_norm(x)
    ...     return y, (x, y)
    >>> def bwd(residuals, ct):
    ...     x, y = residuals
    ...     return (ct * x / np.maximum(y, 1e-300),)
    >>> safe_norm.defvjp(fwd, bwd)
    >>> da.gradient(safe_norm, np.zeros(2), mode="reverse")
    array([0., 0.])
    >>> da.gradient(safe_norm, np.array([3.0, 4.0]), mode="forward")
    array([0.6, 0.8])
    """

    def __init__(self, fun: Callable[..., Any], nondiff_argnums: Any = ()) -> None:
        super().__init__(fun, nondiff_argnums)
        self.fwd: Callable[..., Any] | None = None
        self.bwd: Callable[..., Any] | None = None

    def defvjp(self, fwd: Callable[..., Any], bwd: Callable[..., Any]) -> None:
        """Register ``fwd(*args) -> (output, residuals)`` and ``bwd(residuals, ct) -> tuple``."""
        if not callable(fwd) or not callable(bwd):
            raise TypeError("defvjp takes two functions, fwd and bwd")
        self.fwd, self.bwd = fwd, bwd

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves, treedef, kind, lead = self._split(args, kwargs)
        if kind in ("plain", "other"):
            return self.fun(*args, **kwargs)
        if self.fwd is None:
            raise DualError(
                f"{_name(self.fun)} is a custom_vjp function with no rule yet: call "
                f"{_name(self.fun)}.defvjp(fwd, bwd) before differentiating it"
            )
        if self.nondiff_argnums:
            return self._without_static(args)
        if kind == "dual":
            return _vjp_forward(self, leaves, treedef, lead, len(args))
        return _vjp_reverse(self, leaves, treedef, lead, len(args))

    def _without_static(self, args: tuple[Any, ...]) -> Any:
        """The function and rules of the differentiated arguments only, the others bound."""
        static, dynamic = self._static_split(args)
        fwd, bwd = self.fwd, self.bwd
        assert fwd is not None and bwd is not None
        inner = custom_vjp(_renamed(lambda *d: self.fun(*self._merge(static, d)), self.fun))
        inner.defvjp(
            lambda *d: fwd(*self._merge(static, d)),
            lambda residuals, ct: bwd(*static, residuals, ct),
        )
        return inner(*dynamic)

    def _cotangents(self, residuals: Any, ct: Any, treedef: Any, nargs: int) -> list[Any]:
        """The leaves of ``bwd(residuals, ct)``, checked against the arguments' structure."""
        cts = self.bwd(residuals, ct)  # type: ignore[misc]
        if not isinstance(cts, tuple) or len(cts) != nargs:
            raise DualError(
                f"the bwd rule of {_name(self.fun)} must return a tuple with one cotangent per "
                f"positional argument ({nargs}); it returned "
                + (f"a tuple of {len(cts)}" if isinstance(cts, tuple) else type(cts).__name__)
            )
        leaves, ct_def = flatten(cts)
        if ct_def != treedef:
            raise DualError(
                f"the bwd rule of {_name(self.fun)} returned cotangents of structure {ct_def!r} "
                f"for arguments of structure {treedef!r}; they must match"
            )
        return leaves


def _basis_tree(out_leaves: list[Any], out_def: Any, i: int, dtype: Any) -> Any:
    """The output-structured cotangent that is 1 at flat element ``i`` and 0 elsewhere."""
    cts, offset = [], 0
    for y in out_leaves:
        shape = np.shape(primal(y))
        e = np.zeros(math.prod(shape), dtype=dtype)
        if offset <= i < offset + e.size:
            e[i - offset] = 1.0
        offset += e.size
        cts.append(e.reshape(shape) if shape else e.reshape(())[()])
    return unflatten(out_def, cts)


def _vjp_forward(custom: custom_vjp, leaves: list[Any], treedef: Any, tag: int, nargs: int) -> Any:
    """Forward mode through ``bwd``: J's rows, one bwd call per output element, times tangents."""
    primals, seeds, k = [], {}, 1
    for i, leaf in enumerate(leaves):
        if leaf.__class__ is Dual and leaf.tag == tag:
            primals.append(leaf.value)
            seeds[i] = leaf.partials
            k = leaf.nderiv
        else:
            primals.append(leaf)
    out, residuals = _rule_result(custom, custom.fwd(*unflatten(treedef, primals)), "fwd rule")  # type: ignore[misc]
    out_leaves, out_def = flatten(out)
    out_leaves = [y if isinstance(y, Carrier) else transforms._as_input(y) for y in out_leaves]
    dtype = np.result_type(*[primal(y) for y in out_leaves], np.float32) if out_leaves else float
    m = sum(math.prod(np.shape(primal(y))) for y in out_leaves)
    rows = []
    for i in range(m):
        ct_leaves = custom._cotangents(
            residuals, _basis_tree(out_leaves, out_def, i, dtype), treedef, nargs
        )
        row = None
        for j, p in seeds.items():
            c = ct_leaves[j]
            size = math.prod(np.shape(primal(primals[j])))
            term = np.reshape(c, (1, size)) @ np.reshape(p, (size, k))
            row = term if row is None else row + term
        rows.append(row if row is not None else np.zeros((1, k), dtype=dtype))
    flat = rows[0] if len(rows) == 1 else np.concatenate(rows, axis=0) if rows else np.zeros((0, k))
    results, offset = [], 0
    for y in out_leaves:
        shape = np.shape(primal(y))
        size = math.prod(shape)
        _check_closure(custom, y, tag, "fwd rule")
        block = flat[offset : offset + size].reshape(shape + (k,))
        _check_closure(custom, block, tag, "bwd rule")
        results.append(Dual._make(tag, y, block))
        offset += size
    return unflatten(out_def, results)


def _vjp_reverse(custom: custom_vjp, leaves: list[Any], treedef: Any, tape: Any, nargs: int) -> Any:
    """A tape node whose pullback calls ``bwd`` once per cotangent direction."""
    values = [leaf._value if leaf.__class__ is reverse.Tracer else leaf for leaf in leaves]
    traced = [i for i, leaf in enumerate(leaves) if leaf.__class__ is reverse.Tracer]
    out, residuals = _rule_result(custom, custom.fwd(*unflatten(treedef, values)), "fwd rule")  # type: ignore[misc]
    out_leaves, out_def = flatten(out)
    out_shapes = [np.shape(y) for y in out_leaves]
    sizes = [math.prod(s) for s in out_shapes]

    def vjp(ct: Any, payload: Any) -> list[Any]:
        k = ct.shape[-1]
        per_direction = []
        for j in range(k):
            pieces, offset = [], 0
            for shape, size in zip(out_shapes, sizes):
                piece = ct[offset : offset + size, j].reshape(shape)
                pieces.append(piece if shape else piece[()])
                offset += size
            ct_leaves = custom._cotangents(residuals, unflatten(out_def, pieces), treedef, nargs)
            per_direction.append([ct_leaves[i] for i in traced])
        grads = []
        for n, i in enumerate(traced):
            shape = np.shape(values[i])
            cols = [np.broadcast_to(np.asarray(d[n], dtype=ct.dtype), shape) for d in per_direction]
            grads.append(np.stack(cols, axis=-1))
        return grads

    return _record_tree(tape, out_leaves, out_def, [leaves[i] for i in traced], vjp)
