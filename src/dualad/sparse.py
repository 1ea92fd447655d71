"""Sparse Jacobians from compressed forward passes: one direction per color, read back exactly.

Columns of the Jacobian that share no row are given one color (:mod:`dualad.coloring`); seeding
``x`` with one direction per color (the sum of its columns' unit vectors) makes one JVP of ``f``
(:func:`dualad.jvp`, on either engine) return ``B = J @ S``, in which every nonzero ``J[i, j]`` of
the pattern is ``B[i, color[j]]``.  A banded n x n Jacobian costs 3 directions instead of n.

:class:`SparseJacobian` does the preparation once (pattern, coloring, seed, where each nonzero is
read from ``B``) for a solver that asks for Jacobians of the same ``f`` at many points; each call
is then the pass and one gather.  :func:`sparse_jacobian` is the one-off form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import transforms, wirtinger
from .coloring import color_columns, colors_lower_bound, scipy_sparse
from .sparsity import jacobian_sparsity

__all__ = ["SparseJacobian", "jacobian_sparsity", "sparse_jacobian"]

#: Relative size, against the row's scale sum_j |J_ij r_j|, above which the check along a random
#: direction r reports an entry missing from the pattern (rounding stays far below it).
CHECK_RTOL = 1e-8


def _as_pattern(sparsity: Any, shape: tuple[int, int]) -> Any:
    """``sparsity`` as a canonical boolean CSR array of ``shape``, or a clear error."""
    sparse = scipy_sparse()

    dtype = sparsity.dtype if sparse.issparse(sparsity) else np.asarray(sparsity).dtype
    if np.dtype(dtype).kind != "b":
        raise TypeError(
            f"sparsity must be a boolean pattern (True where the Jacobian may be nonzero); got "
            f"dtype {dtype}. For a numeric matrix A whose nonzeros mark the pattern, pass A != 0."
        )
    given = np.shape(sparsity) if not sparse.issparse(sparsity) else sparsity.shape
    if tuple(given) != shape:
        raise ValueError(
            f"sparsity has shape {tuple(given)}, but the Jacobian of f at x has shape {shape} "
            "(f(x).size, x.size); pass a pattern of that shape (rows: outputs, columns: inputs, "
            "both flattened in C order)"
        )
    pattern = sparse.csr_array(sparsity, dtype=bool)
    pattern.eliminate_zeros()
    pattern.sum_duplicates()  # also sorts the column indices of each row
    return pattern


def _output_size(f: Callable[..., Any], x: np.ndarray, args: tuple[Any, ...]) -> int:
    y = f(x, *args)
    if isinstance(y, list | tuple):
        return sum(int(np.size(v)) for v in y)
    return int(np.size(y))


class SparseJacobian:
    """Sparse Jacobians of one ``f`` at many points, prepared once for a solver's ``jac=``.

    Parameters
    ----------
    f
        ``f(x, *args)`` written with NumPy, or a ``numba.njit`` function (then the passes run in
        the compiled engine, and the pattern is traced on its Python source).
    x
        A point of the shape every later call uses; the pattern is found (or checked) here.
    sparsity
        Boolean pattern of shape ``(f(x).size, x.size)`` (scipy.sparse or dense); found by
        :func:`jacobian_sparsity` when not given.
    args
        Extra arguments of ``f``; used for the pattern and by calls that pass none.
    local
        Find a pattern local to ``x`` (see :func:`jacobian_sparsity`) instead of a global one.
    check
        Compare each Jacobian with one extra JVP along a random direction ``r`` (carried in the
        same pass: one more direction), raising if ``J @ r`` disagrees, i.e. if ``f`` has a
        nonzero derivative outside the pattern.  Default: on when the pattern is given or local,
        off for a global pattern found by dualad (which covers every derivative ``f`` can have).
    engine
        ``"auto"``, ``"numba"`` or ``"numpy"``, as for :func:`dualad.jacobian`.
    format
        ``"csr"`` (default) or ``"csc"`` (what ``solve_ivp``'s BDF and Radau factorise).

    Attributes
    ----------
    sparsity : scipy.sparse.csr_array
        The pattern; every Jacobian stores exactly these entries (zeros included).
    colors : numpy.ndarray
        The color of each column; ``ncolors`` directions per Jacobian.
    ncolors, lower_bound : int
        Colors used, and the most entries in one row (no coloring can use fewer).

    Examples
    --------
    >>> import numpy as np
    >>> def f(u):
    ...     return u**2 - np.roll(u, 1)
    >>> jac = SparseJacobian(f, np.ones(100))
    >>> jac.ncolors, jac.lower_bound
    (2, 2)
    >>> jac(np.arange(100.0)).toarray()[:3, :3]
    array([[ 0.,  0.,  0.],
           [-1.,  2.,  0.],
           [ 0., -1.,  4.]])
    """

    def __init__(
        self,
        f: Callable[..., Any],
        x: Any,
        sparsity: Any = None,
        *,
        args: tuple[Any, ...] = (),
        local: bool = False,
        check: bool | None = None,
        engine: str = "auto",
        format: str = "csr",
    ) -> None:
        if format not in ("csr", "csc"):
            raise ValueError(f"format must be 'csr' or 'csc'; got {format!r}")
        transforms._check_engine(engine)
        point = transforms._as_input(x)
        if np.iscomplexobj(point):
            raise wirtinger.refuse("da.sparse_jacobian")
        self._f, self._args, self._engine, self._format = f, tuple(args), engine, format
        self.shape_of_x = np.shape(point)
        n = int(np.size(point))
        if sparsity is None:
            pattern = jacobian_sparsity(f, point, args=self._args, local=local)
        else:
            m = _output_size(f, point, self._args)
            pattern = _as_pattern(sparsity, (m, n))
        self.sparsity = pattern
        self.check = (sparsity is not None or local) if check is None else bool(check)
        self.colors = color_columns(pattern)
        self.ncolors = int(self.colors.max(initial=-1)) + 1 if pattern.nnz else 0
        self.lower_bound = colors_lower_bound(pattern)
        self._prepare(n)

    def _prepare(self, n: int) -> None:
        """The seed (one column per color, plus the probe when checking) and the gather."""
        width = self.ncolors + self.check
        seed = np.zeros((n, width))
        if self.ncolors:
            seed[np.arange(n), self.colors] = 1.0
        if self.check:
            rng = np.random.default_rng(20261123)
            self._probe = rng.uniform(1.0, 2.0, n) * rng.choice([-1.0, 1.0], n)
            seed[:, -1] = self._probe
        seed.flags.writeable = False  # the NumPy engine shares it with f's input
        self._seed = seed.reshape(self.shape_of_x + (width,))
        stored = self.sparsity if self._format == "csr" else self.sparsity.tocsc()
        stored.sort_indices()
        index = np.int32 if max(stored.nnz, *stored.shape) < 2**31 else np.int64
        self._indptr, self._indices = stored.indptr.astype(index), stored.indices.astype(index)
        outer = np.repeat(np.arange(len(stored.indptr) - 1), np.diff(stored.indptr))
        rows, cols = (outer, stored.indices) if self._format == "csr" else (stored.indices, outer)
        self._take = rows * width + self.colors[cols]
        self._passes = self._chunks(n, width)
        self._compiled: Any = None  # the compiled engine, once a first pass has shown it runs f
        self._engine_known = False

    def _chunks(self, n: int, width: int) -> list[np.ndarray]:
        """Seed columns per pass: at most CHUNK_THRESHOLD in compiled code, where more partials
        leave the registers; within the memory budget on the NumPy engine."""
        if width == 0:
            return []
        compiled = self._engine == "numba" or (
            self._engine == "auto" and transforms._is_numba_function(self._f)
        )
        if compiled:
            from .numba import chunk_size_for

            per_pass = chunk_size_for(width)
        else:
            per_pass = max(1, transforms.MEMORY_BUDGET_ENTRIES // max(n, 1))
        flat = self._seed.reshape(n, width)
        return [
            np.ascontiguousarray(flat[:, s : s + per_pass]).reshape(self.shape_of_x + (-1,))
            for s in range(0, width, per_pass)
        ]

    def __getstate__(self) -> dict[str, Any]:
        """Everything prepared, for a copy in another process (multiprocessing workers)."""
        state = self.__dict__.copy()
        state["_compiled"] = None  # the compiled engine (a module) is found again after a pass
        state["_engine_known"] = False
        return state

    def __repr__(self) -> str:
        m, n = self.sparsity.shape
        return (
            f"SparseJacobian({m} x {n}, {self.sparsity.nnz} entries, {self.ncolors} colors "
            f"(lower bound {self.lower_bound}), check={self.check})"
        )

    # --- one Jacobian ----------------------------------------------------------------------------
    def _compressed(self, point: Any, args: tuple[Any, ...]) -> tuple[Any, np.ndarray]:
        """``f(x)`` and ``J @ seed`` of shape (m, width), from one pass per chunk."""
        m = self.sparsity.shape[0]
        value, blocks = None, []
        for directions in self._passes:
            k = directions.shape[-1]
            if self._compiled is not None:
                value, tangent = self._compiled.run(self._f, "jvp", k, point, directions, *args)
            else:
                value, tangent = transforms.jvp(
                    self._f, point, directions, args=args, engine=self._engine
                )
            if np.size(tangent) != m * k:
                raise ValueError(
                    f"f returned {np.size(tangent) // k} values at this x, but {m} where the "
                    "SparseJacobian was prepared; prepare one for each output size"
                )
            blocks.append(np.reshape(tangent, (m, k)))
        if not self._engine_known and self._passes:
            # After a first pass that went well (compiled, or on the NumPy engine after a
            # warning), later passes call the compiled engine's driver directly, or never.
            self._compiled = transforms._compiled_engine(self._f, point, args, self._engine)
            self._engine_known = True
        if not blocks:
            return value, np.zeros((m, 0))
        return value, blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)

    def _point(self, x: Any) -> Any:
        point = transforms._as_input(x)
        if np.iscomplexobj(point):
            raise wirtinger.refuse("da.sparse_jacobian")
        if np.shape(point) != self.shape_of_x:
            raise ValueError(
                f"x has shape {np.shape(point)}, but this SparseJacobian was prepared for x of "
                f"shape {self.shape_of_x}"
            )
        if self._compiled is not None:
            return transforms._float64_point(point)
        return point

    def value_and_jacobian(self, x: Any, *args: Any) -> tuple[Any, Any]:
        """``f(x)`` and its sparse Jacobian, from the same passes."""
        sparse = scipy_sparse()

        args = args or self._args
        value, compressed = self._compressed(self._point(x), args)
        data = np.take(compressed.reshape(-1), self._take)
        if data.dtype == np.float16:  # scipy.sparse has no float16: the next wider float
            data = data.astype(np.float32)
        build = sparse.csr_array if self._format == "csr" else sparse.csc_array
        jac = build((data, self._indices.copy(), self._indptr.copy()), shape=self.sparsity.shape)
        if self.check:
            self._verify(compressed[:, -1], jac)
        if value is None:  # f has no derivative at all (an empty pattern): no pass was needed
            value = self._f(self._point(x), *args)
        return value, jac

    def __call__(self, x: Any, *args: Any) -> Any:
        """The Jacobian at ``x`` as a scipy.sparse array (``args`` replace the prepared ones)."""
        return self.value_and_jacobian(x, *args)[1]

    def _verify(self, along_probe: np.ndarray, jac: Any) -> None:
        """Raise if the JVP along the probe differs from the assembled Jacobian times it."""
        expected = jac @ self._probe
        scale = abs(jac) @ np.abs(self._probe) + np.abs(along_probe)
        wrong = np.flatnonzero(np.abs(along_probe - expected) > CHECK_RTOL * scale)
        if len(wrong):
            shown = ", ".join(str(i) for i in wrong[:5]) + (", ..." if len(wrong) > 5 else "")
            raise ValueError(
                f"f has nonzero derivatives outside the sparsity pattern, in output rows {shown} "
                f"({len(wrong)} of {jac.shape[0]}; found by comparing J @ r with a JVP along a "
                "random direction r at this x). The Jacobian assembled from this pattern would "
                "be wrong there. Pass a pattern that covers them: da.jacobian_sparsity(f, x) "
                "gives one valid at every x (unless f branches on values of x)."
            )


def sparse_jacobian(
    f: Callable[..., Any],
    x: Any,
    sparsity: Any = None,
    *,
    args: tuple[Any, ...] = (),
    local: bool = False,
    check: bool | None = None,
    engine: str = "auto",
    format: str = "csr",
) -> Any:
    """The Jacobian of ``f`` at ``x`` as a scipy.sparse array, from compressed forward passes.

    Shape ``(f(x).size, x.size)`` (outputs and inputs flattened in C order), storing exactly the
    entries of the pattern.  The pattern is found by :func:`jacobian_sparsity` when not given,
    and a given one is checked along one random direction unless ``check=False``.  For many
    Jacobians of the same ``f``, prepare a :class:`SparseJacobian` once instead; the parameters
    are the same.

    Examples
    --------
    >>> import numpy as np
    >>> sparse_jacobian(lambda u: u[1:] * u[:-1], np.array([1.0, 2.0, 3.0])).toarray()
    array([[2., 1., 0.],
           [0., 3., 2.]])
    """
    prepared = SparseJacobian(
        f, x, sparsity, args=args, local=local, check=check, engine=engine, format=format
    )
    return prepared(x)
