"""Whole-array NumPy on DualArrays in compiled code: ufuncs, operators, broadcasting, reductions,
products and slicing, each checked against the NumPy engine and central differences.

Each function packs many operations into one output vector, so that Numba compiles a handful of
functions (one chunk size, K = 6) rather than one per operation.
"""

import re
import warnings

import numpy as np
import pytest

numba = pytest.importorskip("numba")

import dualad as da  # noqa: E402

RNG = np.random.default_rng(20261202)
X = np.array([0.7, 1.3, 0.4, 2.1, 0.9, 1.6])
C = np.array([0.5, -1.0, 2.0, 1.5, 0.25, -0.75])
ROW = np.array([1.0, -2.0, 0.5])
M = RNG.normal(size=(4, 6))


@pytest.fixture(autouse=True)
def _no_fallback():
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="dualad could not compile")
        yield


def central(f, x, h=1e-6):
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        cols.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    return np.stack(cols, axis=-1)


def check(f, x=X, fd_rtol=1e-6):
    """Compiled Jacobian == NumPy engine's (to rounding) and == central differences."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, jac = da.value_and_jacobian(f, x, engine="numba")
    ref_value, ref = da.value_and_jacobian(f.py_func, x, engine="numpy")
    np.testing.assert_allclose(value, ref_value, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(jac, ref, rtol=1e-12, atol=1e-12)
    fd = central(f.py_func, x)
    np.testing.assert_allclose(jac, fd, rtol=fd_rtol, atol=fd_rtol * max(1.0, np.abs(fd).max()))
    return jac


@numba.njit
def elementwise(x):
    d = x[0] * x - C  # a Dual times a DualArray, a float array on the right
    a = np.sin(x) * C + np.exp(-x) / (1.0 + x * x) - x**2 + 2.0**x + x**1.5 - x**-1
    b = C - d + abs(x - 1.0) - np.tanh(x) ** 3 + np.arctan2(x, C) + np.hypot(x, 2.0)
    b = -b + np.maximum(x, C) + np.log1p(x) + np.sqrt(x) * np.cos(C) + C / x + x**x
    return a + b * (x > 1.0) + np.floor(x * 3.0) + (x[2] < x) * x  # a Dual among values


def test_ufuncs_and_operators_with_arrays_and_scalars_on_either_side():
    jac = check(elementwise)
    assert jac.shape == (6, 6)


@numba.njit
def broadcasting(x):
    a = x.reshape((2, 3))
    col = x[:2].reshape((2, 1))
    b = a * ROW + col - a / (1.0 + col * col) + M[:2, :3]  # (2,3) with (3,), (2,1) and (2,3)
    b *= 2.0
    b += a
    b -= ROW
    b /= 1.0 + col * col
    b **= 2
    c = ROW * x[3] + col  # float (3,) times a Dual, plus a (2,1) DualArray: (2, 3)
    return np.concatenate((b.ravel(), c.ravel()))


def test_broadcasting_rows_columns_and_in_place_operators():
    check(broadcasting)


@numba.njit
def in_place_through_a_view(x):
    """An in-place operator on a view writes into the array it views (it once made a new
    array, leaving ``a`` zero)."""
    a = np.zeros_like(x)
    b = a[:3]
    b += x[:3]
    b *= x[3:]
    return a


def test_in_place_operators_write_through_views():
    jac = check(in_place_through_a_view)
    expected = np.zeros((6, 6))
    expected[:3] = np.hstack((np.diag(X[3:]), np.diag(X[:3])))  # a[i] = x[i] * x[i + 3]
    np.testing.assert_array_equal(jac, expected)


@numba.njit
def reductions(x):
    a = x.reshape((2, 3))
    out = np.zeros_like(np.concatenate((x, x, x)))
    out[0] = np.sum(x) + x.sum()
    out[1:4] = np.sum(a, axis=0)
    out[4:6] = a.sum(axis=-1)
    out[6] = np.prod(x) + x.prod()
    out[7] = np.mean(x) + np.mean(a, axis=1)[1]
    out[8] = np.var(x)
    out[9] = np.std(a)
    out[10] = np.max(x) * np.min(x)
    out[11] = x[np.argmax(x)] - x[np.argmin(x)] + x.max() + a.min()
    out[12] = np.sqrt(np.sum(x * x)) + np.linalg.norm(a)
    out[13:16] = np.cumsum(x[:3])
    out[16:18] = np.sort(x)[4:]
    return out


def test_reductions():
    check(reductions)


@numba.njit
def sums_of_operations(x):
    """np.sum of an operation used nowhere else is one loop without the operation's array
    (dualad.numba.arrayops.FuseSum); the same sum of an array kept for later is not."""
    a = x.reshape((2, 3))
    kept = x * x
    out = np.zeros_like(x)
    out[0] = np.sum(x * x)
    out[1] = np.sum(kept)  # kept is read again below: summed as an array
    out[2] = np.sum(x * C) + np.sum(np.sin(x))  # a float array operand, a ufunc
    out[3] = np.sum(a * ROW) + np.sum(a / (1.0 + a[0]))  # broadcast rows
    out[4] = np.sum(x[0] - x) + np.sum(2.0**x)  # a Dual and a float on the left
    out[5] = kept[1]
    return out


def test_sums_of_operations_without_their_arrays():
    jac = check(sums_of_operations)
    value = da.value_and_jacobian(sums_of_operations, X, engine="numba")[0]
    assert value[0] == value[1]  # the same sum as of the array, to the last bit
    np.testing.assert_array_equal(jac[0], jac[1])


@numba.njit
def _sum_of_squares(x):
    return np.sum(x * x)


@numba.njit
def _sum_of_squares_kept(x):
    s = x * x
    return np.sum(s) + 0.0 * s[0]


def _allocations(call):
    from numba.core.runtime import _nrt_python, rtsys

    _nrt_python.memsys_enable_stats()
    try:
        call()
        before = rtsys.get_allocation_stats().alloc
        call()
        return rtsys.get_allocation_stats().alloc - before
    finally:
        _nrt_python.memsys_disable_stats()


def test_a_sum_of_an_operation_makes_no_array():
    fused = _allocations(lambda: da.jacobian(_sum_of_squares, X, engine="numba"))
    kept = _allocations(lambda: da.jacobian(_sum_of_squares_kept, X, engine="numba"))
    assert kept == fused + 1
    np.testing.assert_array_equal(da.jacobian(_sum_of_squares, X, engine="numba"), 2.0 * X)


@numba.njit
def products(x):
    a = x.reshape((2, 3))
    v = M @ x  # float matrix @ DualArray vector: (4,)
    w = x[:4] @ M  # DualArray vector @ float matrix: (6,)
    g = a @ a.T  # (2, 2)
    o = np.outer(x[:2], x[4:])  # (2, 2)
    s = np.dot(x, C) + x @ x + np.dot(a[0], a[1])
    return np.concatenate((v, w, g.ravel(), o.ravel(), np.ones(1) * s, a.T @ x[:2]))


def test_dot_matmul_and_outer():
    check(products)


@numba.njit
def slicing(x):
    d = x[1:] - x[:-1]  # (5,)
    e = x[::2] * x[1::2]  # (3,)
    a = x.reshape((2, 3))
    r = a[1, :] - a[0, :]  # rows
    c = a[:, 2] / a[:, 0]  # columns
    y = x.copy()
    y[0:2] = 1.0  # a scalar into a slice
    y[2:4] = x[4:]  # an array into a slice
    y[4] = x[0] * x[1]
    z = np.where(x > 1.0, x, -x * 2.0)
    s = np.stack((x[:3], x[3:]))
    return np.concatenate((d, e, r, c, y, z, s[1], a.T[2], np.transpose(a)[:, 0]))


def test_slices_assignment_copy_where_stack_transpose():
    check(slicing)


@numba.njit
def entries(x):
    """Single entries read and written by negative indices, which wrap as on arrays."""
    a = x.reshape((2, 3))
    out = np.zeros_like(x)
    out[-1] = x[-1] * x[0]  # 1-D read and write
    out[-6] = a[-1, -2] * a[0, -3]  # 2-D reads by a tuple
    out[2] = a[1, 0] + x[-3]
    out[-3] = 2.0  # a float into a Dual entry: zero partials
    b = np.zeros_like(a)
    b[-2, 1] = x[5] * x[5]  # 2-D write by a tuple
    out[1] = b[0, 1]
    return out


def test_entries_by_negative_indices():
    jac = check(entries)
    expected = np.zeros((6, 6))
    expected[5, [5, 0]] = X[0], X[5]
    expected[0, [4, 0]] = X[0], X[4]
    expected[2, 3] = 2.0  # a[1, 0] and x[-3] are both x[3]
    expected[1, 5] = 2.0 * X[5]
    np.testing.assert_allclose(jac, expected, rtol=1e-15, atol=0.0)


@numba.njit
def pair_loop(x):
    """Issue 11's mixed form: a pair loop over rows with array expressions inside (rows of a
    reshape, ``np.sum(d * d)`` of a 1-D difference), beside the same sum written as loops; and
    new DualArrays whose values and partials share one allocation, written then read."""
    p = x.reshape((3, 2))
    mixed = 0.0
    loops = 0.0
    for i in range(3):
        for j in range(i + 1, 3):
            d = p[i] - p[j]
            r2 = np.sum(d * d)
            mixed += 1.0 / r2**3 - np.sqrt(r2)
            s = 0.0
            for k in range(2):
                t = p[i, k] - p[j, k]
                s += t * t
            loops += 1.0 / s**3 - np.sqrt(s)
    f = np.zeros_like(x[:4])  # f[3] stays zero: its partials too
    g = np.empty_like(x[:3])
    g[:] = 0.5 * x[:3]
    h = np.empty_like(x[3:])
    h[:] = x[3:] ** 2
    f[0] = mixed
    f[1] = loops
    f[2] = np.sum(g * h) + np.sum(x[::2])  # a strided 1-D sum
    return np.concatenate((f, g, h, x.ravel()))


def test_a_pair_loop_with_array_expressions_matches_its_loop_form():
    jac = check(pair_loop)
    np.testing.assert_allclose(jac[0], jac[1], rtol=1e-13, atol=1e-13)
    assert np.all(jac[3] == 0.0)
    np.testing.assert_array_equal(jac[-6:], np.eye(6))


# --- refusals: each names what to write instead --------------------------------------------------


@numba.njit
def _updates_its_input(x):
    x += 1.0
    return x


@numba.njit
def _accumulates_in_a_float_array(x):
    acc = np.zeros(3)
    acc += x[:3]
    return acc


@numba.njit
def _returns_a_tuple(x):
    return x[0], x[1:]


@numba.njit
def _max_along_an_axis(x):
    return np.max(x.reshape((2, 3)), axis=0)


@pytest.mark.parametrize(
    "f, advice",
    [
        (_updates_its_input, r"updates its input array in place.*x = x\.copy\(\)"),
        (_accumulates_in_a_float_array, r"float array and drop.*np\.zeros\(m, dtype=x\.dtype\)"),
        (_max_along_an_axis, r"axis=\.\.\.\) of a DualArray.*in a loop"),
    ],
    ids=["in-place into the input", "Duals into a float array", "max with axis"],
)
def test_refusals_say_what_to_write_instead(f, advice):
    with pytest.raises(da.DualError, match=advice) as e:
        da.jacobian(f, X, engine="numba")
    assert len(str(e.value).splitlines()) <= 5
    assert re.search(r"test_numba_arrays\.py, line \d+\)$", str(e.value)), str(e.value)


@numba.njit
def _mismatched_shapes(x):
    """Shapes that do not broadcast (x[0] > 0), else an in-place result of another shape."""
    if x[0] > 0.0:
        return x[:2] * x[:3]
    y = x[:1] * 1.0
    y += x[:3]
    return y


@pytest.mark.parametrize(
    "sign, message",
    [(1.0, "could not be broadcast together"), (-1.0, "in-place operation does not have")],
    ids=["broadcast", "in-place"],
)
def test_shapes_that_do_not_fit_raise_at_run_time(sign, message):
    with pytest.raises(ValueError, match=message):
        da.jacobian(_mismatched_shapes, sign * X, engine="numba")


@numba.njit
def _every_other(x):
    return x[::2]


def test_an_output_viewing_the_input_is_copied_out():
    """The drivers hand f its input without a reference (dualad.numba.dualtypes.borrowed), so
    what they return must own its memory even when f returns a view of the input."""
    x = X.copy()
    value, jac = da.value_and_jacobian(_every_other, x, engine="numba")
    value_v, tangent = da.jvp(_every_other, x, np.ones_like(x))
    for out in (value, jac, value_v, tangent):
        assert not np.shares_memory(out, x)
    del x
    _ = [np.full(6, 9.0) for _ in range(20)]  # reuse of the freed input's memory would show
    np.testing.assert_array_equal(value, X[::2])
    np.testing.assert_array_equal(value_v, X[::2])
    np.testing.assert_array_equal(jac, np.eye(6)[::2])
    np.testing.assert_array_equal(tangent, np.ones(3))


def test_a_tuple_output_gives_a_tuple_of_jacobians():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, jac = da.value_and_jacobian(_returns_a_tuple, X, engine="numba")
    ref_value, ref = da.value_and_jacobian(_returns_a_tuple.py_func, X, engine="numpy")
    assert isinstance(jac, tuple) and jac[0].shape == (6,) and jac[1].shape == (5, 6)
    for a, b in zip(value + jac, ref_value + ref):
        np.testing.assert_array_equal(a, b)


# --- dualad.numba.promote: float allocations of an unchanged library function -------------------


@numba.njit
def _library_squares(x):
    n = x.size
    out = np.empty(n)
    acc = np.zeros((2, n), dtype=np.float64)
    for i in range(n):
        out[i] = x[i] ** 2
        acc[0, i] = x[i]
    return out + acc[0] + np.ones(n)


def test_float_allocations_are_refused_unless_promoted():
    x = X[:3]
    with pytest.raises(da.DualError, match=r"float array would drop.*dualad\.numba\.promote\(f\)"):
        da.jacobian(_library_squares, x, engine="numba")
    from dualad.numba import promote

    promoted = promote(_library_squares)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jac = da.jacobian(promoted, x)
    np.testing.assert_array_equal(jac, np.diag(2.0 * x + 1.0))
    np.testing.assert_array_equal(promoted(x), _library_squares(x))  # floats: the same values
    np.testing.assert_allclose(jac, central(_library_squares.py_func, x), rtol=1e-7)


def test_promote_refuses_a_closure_clearly():
    from dualad.numba import promote

    scale = 2.0

    def inner(x):
        return np.empty(3) * scale

    with pytest.raises(da.DualError, match="enclosing function .*scale.*module level"):
        promote(inner)
