"""Test settings and the conventions that keep the suite honest and fast.

Hypothesis runs a fixed sequence of examples, so CI is repeatable; set HYPOTHESIS_PROFILE=explore
to draw fresh random examples locally.

Compiled-engine tests: most of the suite's time is Numba compiling a function for Duals (one
compilation per distinct function, driver kind and chunk size K, seconds each).  New tests follow
these rules so that the cost stays per function, not per test:

- Compiled functions live at module level (or in a ``scope="session"``/``"module"`` fixture),
  never inside a test or a parametrized case: Numba compiles a function object once per process,
  so a function made per test compiles per test.  Parametrize the *points* or the *arrays*, not
  the function; pack several operations into one function's output (see test_numba_arrays.py,
  test_numba_rules.py) rather than one tiny function per operation.
- Give ``chunk_size`` only where the test is about chunking; elsewhere let the default pick it,
  and reuse the same point size across tests of one function (K follows the number of inputs,
  so n = 3 and n = 4 are two compilations of everything).
- A sweep over many sizes, chunk sizes or rules is marked ``@pytest.mark.slow``: ``make test``
  skips it, CI runs it (``--slow``).  The hypothesis properties of test_properties.py draw a
  quarter of their examples without ``--slow``.
- A test that registers a rule takes the ``restore_rules`` fixture (a test that leaves one
  registered fails): the disk cache's key covers the registered rules, so a leaked rule made
  every later compiled function of that worker miss the cache.
- Compiled drivers go to one disk cache per test session (below), shared by the pytest-xdist
  workers: a function compiled by one worker is loaded, not compiled, by the other.  ``make test``
  keeps it across runs in ``.venv/dualad-test-cache`` (``DUALAD_TEST_CACHE``), so a second run
  loads what the first compiled; its key covers the engine's and the rules' sources and each
  function's code, so an edit compiles again, and CI's fresh clone compiles everything.  Without
  that variable the cache is a temporary folder removed at the end.  The tests never read or
  write the user's own cache (``~/.cache/dualad``).  Tests that count compilations set
  ``DUALAD_CACHE_DIR=off`` for themselves.
- A warning a test expects (NumPy's ``invalid value`` at an inf or NaN input) is filtered on that
  test with ``pytest.mark.filterwarnings`` and a comment saying why, never globally.
"""

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings

import dualad as da
from dualad import containers, rules, transforms

# both_modes patches the API's default for the whole test, every example alike
_fixture_ok = [HealthCheck.function_scoped_fixture]
settings.register_profile("ci", derandomize=True, database=None, suppress_health_check=_fixture_ok)
settings.register_profile("explore", derandomize=False, suppress_health_check=_fixture_ok)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# the installed-wheel smoke test runs outside the tree (make check-dist), never under pytest
collect_ignore = ["install"]


def pytest_configure(config):
    """One disk cache of compiled drivers for the whole session, chosen by the controlling
    process before pytest-xdist starts its workers (they inherit the environment): the folder
    ``DUALAD_TEST_CACHE`` names, kept across runs (``make test`` names one in its venv), else a
    temporary one removed at the end."""
    if config.getoption("--slow"):
        os.environ["DUALAD_SLOW_TESTS"] = "1"  # the full example counts of test_properties
    if hasattr(config, "workerinput") or os.environ.get("DUALAD_CACHE_DIR") is not None:
        return
    kept = os.environ.get("DUALAD_TEST_CACHE")
    if kept:
        os.environ["DUALAD_CACHE_DIR"] = kept
        _drop_stale_drivers()
        return
    folder = tempfile.mkdtemp(prefix="dualad-test-cache-")
    os.environ["DUALAD_CACHE_DIR"] = folder
    config._dualad_test_cache = folder


def _drop_stale_drivers():
    """Remove the kept cache's folders of other engine sources: each edit of the compiled engine
    or the rules starts a new folder (the key covers them), and the old ones are never read."""
    from dualad.numba import cache

    current = cache.cache_folder()
    if current is None:
        return
    for folder in current.parent.glob("drivers-*"):
        if folder != current:
            shutil.rmtree(folder, ignore_errors=True)


def pytest_unconfigure(config):
    folder = getattr(config, "_dualad_test_cache", None)
    if folder is not None:
        del os.environ["DUALAD_CACHE_DIR"]
        shutil.rmtree(folder, ignore_errors=True)


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (CI does)")


def _compile_cost(path) -> tuple[int, int]:
    """A file's place in the run: the ones naming more compiled functions first, then larger."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return (0, 0)
    return (text.count("njit") + text.count('engine="numba"'), len(text))


def pytest_collection_modifyitems(config, items):
    # Files in the order the workers should take them (make test runs --dist loadfile): the ones
    # that compile the most first, the NumPy-only ones last, so that the last file a worker starts
    # is a short one (longest processing time first); within a file the order is kept.
    costs = {}
    for item in items:
        if item.path not in costs:
            costs[item.path] = _compile_cost(item.path)
    items.sort(key=lambda item: costs[item.path], reverse=True)  # stable: files stay together
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="an exhaustive sweep: run with --slow (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def restore_rules():
    """register_rule writes into the global table: put it back as it was after the test."""
    saved_rules = dict(rules.RULES)
    saved_zero = set(rules.ZERO_DERIVATIVE)
    yield
    rules.RULES.clear()
    rules.RULES.update(saved_rules)
    rules.ZERO_DERIVATIVE.clear()
    rules.ZERO_DERIVATIVE.update(saved_zero)


@pytest.fixture(autouse=True)
def _no_rule_left_registered():
    """Fail a test that leaves a rule registered, and put the table back: the compiled drivers'
    disk-cache key covers the registered rules, so a leaked one made every later driver of that
    worker a cache miss (compiled again in every run; the leaks this caught cost minutes of
    ``make test``)."""
    saved = dict(rules.RULES)
    yield
    leaked = [f for f, rule in rules.RULES.items() if rule.registered and saved.get(f) is not rule]
    if leaked:
        names = sorted(rules.RULES[f].name for f in leaked)
        for func in leaked:  # SciPy's built-in rules, loaded on first use, stay
            if func in saved:
                rules.RULES[func] = saved[func]
            else:
                del rules.RULES[func]
        pytest.fail(f"the test left rules registered ({names}): give it the restore_rules fixture")


def _reverse_unless_nested(api):
    """``api`` with mode="reverse" by default, except inside another derivative (forward there)."""

    def call(f, x, *rest, **kw):
        if "mode" not in kw and not transforms._nested(x, kw.get("args", ())):
            kw["mode"] = "reverse"
        return api(f, x, *rest, **kw)

    return call


@pytest.fixture(params=["forward", "reverse"])
def both_modes(request, monkeypatch):
    """Run a test of the API twice: as written, and with reverse mode as the API's default.

    Every Jacobian and gradient the test takes without naming a mode is then taken by the
    reverse engine (a derivative inside it by forward mode, as mode="auto" does: reverse over
    forward), so the forward-mode tests check reverse mode against the same references.
    """
    if request.param == "reverse":
        if request.node.get_closest_marker("forward_only"):
            pytest.skip("checks forward mode's own workings")
        for name in ("value_and_jacobian", "jacobian", "value_and_gradient", "gradient"):
            monkeypatch.setattr(da, name, _reverse_unless_nested(getattr(containers, name)))
        gradient = da.gradient
        monkeypatch.setattr(da, "grad", lambda f, **kw: lambda x, *a: gradient(f, x, args=a, **kw))
    return request.param
