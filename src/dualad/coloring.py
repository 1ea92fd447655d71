"""Column coloring of a Jacobian sparsity pattern, so that one forward pass serves many columns.

Two columns that share no row can be seeded together: in the product ``J @ (e_i + e_j)`` every
row holds an entry of at most one of them, so both columns are read back exactly.  A coloring
gives every column a color such that columns of one color share no row (Curtis, Powell and
Reid, 1974); the colors are the vertices' colors in the column intersection graph, where two
columns are adjacent when they share a row.  A row with k entries needs k distinct colors, so
the largest row is a lower bound on the number of colors.

The coloring is greedy (each column takes the smallest color none of its neighbours has), over
several orderings of the columns, keeping the one with the fewest colors, then improved by
iterated greedy recoloring (Culberson, 1992).  Natural order is optimal for banded patterns
(bandwidth colors); smallest-last (Matula and Beck, 1983) and largest-first do well on stencils
and irregular patterns (Gebremedhin, Manne and Pothen, SIAM Review 47, 2005).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ORDERS", "color_columns", "colors_lower_bound", "is_column_coloring"]

#: Column orderings tried by color_columns.
ORDERS = ("natural", "largest_first", "smallest_last")

#: Entries of the column intersection graph beyond which no coloring is attempted: a pattern whose
#: rows are that dense needs about as many colors as columns anyway.
MAX_GRAPH_ENTRIES = 50_000_000

#: Passes of iterated greedy recoloring after the best ordering (each costs one greedy coloring).
RECOLOR_PASSES = 8


def scipy_sparse() -> Any:
    """scipy.sparse, which every sparse result is; SciPy is an optional dependency of dualad."""
    try:
        from scipy import sparse
    except ImportError:  # pragma: no cover - the test environment has SciPy
        raise ImportError(
            "dualad's sparse Jacobians are scipy.sparse arrays: install SciPy "
            "(pip install 'dualad[scipy]')"
        ) from None
    return sparse


def _csr(pattern: Any) -> Any:
    sparse = scipy_sparse()
    if not sparse.issparse(pattern):
        pattern = sparse.csr_array(np.atleast_2d(np.asarray(pattern)) != 0)
    return sparse.csr_array(pattern, dtype=bool)


def colors_lower_bound(pattern: Any) -> int:
    """The most entries in one row: no coloring can use fewer colors."""
    p = _csr(pattern)
    return int(np.diff(p.indptr).max(initial=0))


def is_column_coloring(pattern: Any, colors: np.ndarray) -> bool:
    """True when no two columns of one color have an entry in the same row."""
    p = _csr(pattern)
    colors = np.asarray(colors)
    if colors.shape != (p.shape[1],):
        return False
    rows = np.repeat(np.arange(p.shape[0]), np.diff(p.indptr))
    keys = rows * (int(colors.max(initial=0)) + 1) + colors[p.indices]
    return len(np.unique(keys)) == p.nnz


def _intersection_graph(p: Any) -> Any:
    """Columns adjacent when they share a row (no self loops), as CSR."""
    g = (p.T.astype(np.int32) @ p.astype(np.int32)).tocsr()
    g.setdiag(0)
    g.eliminate_zeros()
    return g


def _greedy(indptr: list[int], indices: list[int], order: list[int]) -> list[int]:
    n = len(order)
    colors = [-1] * n
    mark = [-1] * (n + 1)  # mark[c] == j: a neighbour of column j has color c
    for j in order:
        for k in indices[indptr[j] : indptr[j + 1]]:
            c = colors[k]
            if c >= 0:
                mark[c] = j
        c = 0
        while mark[c] == j:
            c += 1
        colors[j] = c
    return colors


def _smallest_last(indptr: list[int], indices: list[int]) -> list[int]:
    """Repeatedly remove a column of least remaining degree; color in reverse removal order."""
    n = len(indptr) - 1
    degree = [indptr[j + 1] - indptr[j] for j in range(n)]
    buckets: list[dict[int, None]] = [{} for _ in range(max(degree, default=0) + 1)]
    for j in range(n):
        buckets[degree[j]][j] = None  # dicts keep insertion order: deterministic ties
    removed = [False] * n
    order = []
    d = 0
    for _ in range(n):
        d = max(d - 1, 0)
        while not buckets[d]:
            d += 1
        j = next(iter(buckets[d]))
        del buckets[d][j]
        removed[j] = True
        order.append(j)
        for k in indices[indptr[j] : indptr[j + 1]]:
            if not removed[k]:
                del buckets[degree[k]][k]
                degree[k] -= 1
                buckets[degree[k]][k] = None
    order.reverse()
    return order


def _recolor(indptr: list[int], indices: list[int], colors: list[int], passes: int) -> list[int]:
    """Culberson's iterated greedy: coloring again, one color class after another, never needs
    more colors; reversing the classes, or taking the largest first, often needs fewer."""
    for i in range(passes):
        k = max(colors, default=-1) + 1
        classes: list[list[int]] = [[] for _ in range(k)]
        for j, c in enumerate(colors):
            classes[c].append(j)
        if i % 2:
            classes.sort(key=len, reverse=True)
        else:
            classes.reverse()
        colors = _greedy(indptr, indices, [j for members in classes for j in members])
    return colors


def color_columns(
    pattern: Any, orders: tuple[str, ...] = ORDERS, recolor_passes: int = RECOLOR_PASSES
) -> np.ndarray:
    """A color for each column such that columns of one color share no row.

    Parameters
    ----------
    pattern
        Boolean sparsity pattern, shape ``(m, n)`` (scipy.sparse or dense).
    orders
        Column orderings for the greedy coloring, from :data:`ORDERS`; the one with the fewest
        colors is kept (the first of them on a tie).
    recolor_passes
        Passes of iterated greedy recoloring of that coloring (never more colors).

    Returns
    -------
    numpy.ndarray
        ``n`` integers ``0 ... ncolors - 1``.

    Examples
    --------
    >>> import numpy as np
    >>> tridiagonal = np.eye(6) + np.eye(6, k=1) + np.eye(6, k=-1)
    >>> color_columns(tridiagonal)
    array([0, 1, 2, 0, 1, 2])
    """
    unknown = set(orders) - set(ORDERS)
    if unknown or not orders:
        raise ValueError(f"orders must be taken from {ORDERS}; got {orders!r}")
    p = _csr(pattern)
    n = p.shape[1]
    row_lengths = np.diff(p.indptr).astype(np.int64)
    if int(row_lengths @ row_lengths) > MAX_GRAPH_ENTRIES:
        return np.arange(n)  # rows this dense: one color per column
    g = _intersection_graph(p)
    indptr, indices = g.indptr.tolist(), g.indices.tolist()
    best = None
    for name in orders:
        if name == "natural":
            order = list(range(n))
        elif name == "largest_first":
            order = np.argsort(-np.diff(g.indptr), kind="stable").tolist()
        else:
            order = _smallest_last(indptr, indices)
        colors = _greedy(indptr, indices, order)
        if best is None or max(colors, default=-1) < max(best, default=-1):
            best = colors
    return np.asarray(_recolor(indptr, indices, best, recolor_passes), dtype=np.int64)
