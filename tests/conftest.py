"""Test settings: hypothesis runs a fixed sequence of examples, so CI is repeatable.

Set HYPOTHESIS_PROFILE=explore to draw fresh random examples locally.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

import dualad as da
from dualad import containers, transforms

# both_modes patches the API's default for the whole test, every example alike
_fixture_ok = [HealthCheck.function_scoped_fixture]
settings.register_profile("ci", derandomize=True, database=None, suppress_health_check=_fixture_ok)
settings.register_profile("explore", derandomize=False, suppress_health_check=_fixture_ok)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# the installed-wheel smoke test runs outside the tree (make check-dist), never under pytest
collect_ignore = ["install"]


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (CI does)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="an exhaustive sweep: run with --slow (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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
