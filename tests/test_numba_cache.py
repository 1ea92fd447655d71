"""The compiled engine's disk cache (dualad.numba.cache): reused across processes, never stale.

Each check runs in fresh Python processes with ``DUALAD_CACHE_DIR`` set to a temporary folder:
a first process compiles and writes the cache, a second loads it (Numba's dispatcher counts the
hit), and after the user's function changes a third compiles again and returns the new
function's derivative, not the cached one.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dualad
from dualad.numba import cache

SRC = str(Path(dualad.__file__).resolve().parents[1])

USER_MODULE = """
import numba
import numpy as np

SCALE = {scale}


@numba.njit
def cubes(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += SCALE * x[i] ** 3
    return s


@numba.njit
def squares(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = SCALE * x[i] ** 2
    return out
"""

RUN = """
import json, sys
import numpy as np
import dualad as da
import dualad.numba as dn
from user_function import cubes

from numba.core import event

x = np.array([1.0, 2.0])
with event.install_recorder("numba:compile") as compiles:
    g = da.gradient(cubes, x)
stats = dn.driver(cubes, "value_and_jacobian", 2).stats
print(json.dumps({"gradient": g.tolist(), "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values()),
                  "compiled": [str(e.data.get("dispatcher")) for _, e in compiles.buffer],
                  "float_signatures": len(cubes.signatures)}))
"""


def _run(folder: Path, cache_dir: str, program: str = RUN) -> dict:
    env = dict(os.environ, DUALAD_CACHE_DIR=cache_dir, PYTHONPATH=f"{folder}{os.pathsep}{SRC}")
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=folder, env=env, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write_user_module(folder: Path, scale: float) -> None:
    (folder / "user_function.py").write_text(USER_MODULE.format(scale=scale))
    for stale in folder.glob("__pycache__/user_function*"):
        stale.unlink()  # the module's own bytecode: Python would notice anyway


def test_second_process_loads_and_a_change_recompiles(tmp_path):
    cache_dir = str(tmp_path / "cache")
    _write_user_module(tmp_path, 1.0)
    first = _run(tmp_path, cache_dir)
    assert first["gradient"] == [3.0, 12.0]
    assert first["hits"] == 0
    second = _run(tmp_path, cache_dir)
    assert second["gradient"] == [3.0, 12.0]
    assert second["hits"] == 1 and second["misses"] == 0
    assert second["compiled"] == [] and second["float_signatures"] == 0  # nothing compiles
    # the user changes a global constant of the function: the cached driver must not be used
    _write_user_module(tmp_path, 2.0)
    third = _run(tmp_path, cache_dir)
    assert third["gradient"] == [6.0, 24.0]
    assert third["hits"] == 0
    drivers = list(Path(cache_dir).glob("drivers-*/cubes_value_and_jacobian_*.py"))
    assert len(drivers) == 2  # one file per version of the function, the old one unused


RUN_REVERSE = """
import json
import numpy as np
from numba.core import event
import dualad as da
from dualad.numba import adjoint
from user_function import cubes

x = np.arange(64.0)
with event.install_recorder("numba:compile") as compiles:
    g = da.gradient(cubes, x)                    # auto mode: f on floats, then the Jacobian driver
    value, pullback = adjoint.vjp(cubes, x, ())  # the record driver on its own
    pulled = pullback(np.ones(1)).ravel().tolist()
stats = [adjoint.driver(cubes, kind).stats for kind in ("jacobian", "record", "value")]
print(json.dumps({"gradient": g.tolist(), "pulled": pulled,
                  "hits": [sum(s.cache_hits.values()) for s in stats],
                  "misses": [sum(s.cache_misses.values()) for s in stats],
                  "compiled": [str(e.data.get("dispatcher")) for _, e in compiles.buffer],
                  "float_signatures": len(cubes.signatures)}))
"""


def test_compiled_reverse_drivers_are_loaded_by_a_second_process_never_stale(tmp_path):
    """The reverse drivers (and auto mode's f on floats, 64 inputs) go through the same disk
    cache: the second process loads them all and compiles nothing (a miss would count), a
    changed function compiles again."""
    cache_dir = str(tmp_path / "cache")
    expected = [3.0 * v**2 for v in range(64)]
    _write_user_module(tmp_path, 1.0)
    first = _run(tmp_path, cache_dir, RUN_REVERSE)
    assert first["gradient"] == first["pulled"] == expected
    assert first["hits"] == [0, 0, 0]
    second = _run(tmp_path, cache_dir, RUN_REVERSE)
    assert second["gradient"] == second["pulled"] == expected
    assert second["hits"] == [1, 1, 1] and second["misses"] == [0, 0, 0]
    # nothing else compiles either: the pullback's helper is on Numba's disk cache too,
    # and the user's own dispatcher is never compiled (f on floats is dualad's cached copy)
    assert second["compiled"] == [] and second["float_signatures"] == 0
    _write_user_module(tmp_path, 2.0)
    third = _run(tmp_path, cache_dir, RUN_REVERSE)
    assert third["gradient"] == third["pulled"] == [2.0 * g for g in expected]
    assert third["hits"] == [0, 0, 0]
    for kind in ("jacobian", "record", "value"):
        assert len(list(Path(cache_dir).glob(f"drivers-*/cubes_reverse_{kind}_*.py"))) == 2


def test_the_key_does_not_change_once_the_function_is_compiled():
    """Compiling f changed the reference counts in its code object, which marshal's later
    formats write: the key of a function called before its derivative was another one."""
    import numba

    @numba.njit
    def halves(x):
        return 0.5 * x[0] * x[1]

    before = cache.function_key(halves)
    halves(np.array([2.0, 3.0]))
    assert cache.function_key(halves) == before


def _allocates_floats(x):
    out = np.zeros(x.size)
    for i in range(x.size):
        out[i] = 2.0 * x[i]
    return out


def test_a_promoted_function_has_a_key():
    """promote's allocators were made without a module, so every promoted function had no key:
    its drivers were compiled again in each process (19 s a run for one corpus function)."""
    from dualad.numba import promote

    key = cache.function_key(promote(_allocates_floats))
    assert key is not None and key != cache.function_key(_allocates_floats)
    assert cache.function_key(promote(_allocates_floats)) == key


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, "off")
    assert cache.cache_folder() is None


def test_an_unwritable_folder_means_no_cache(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(cache.ENV_VAR, str(blocked / "cache"))
    assert cache.cache_folder() is None


def test_the_default_folder_is_the_users_cache_not_the_package(monkeypatch, tmp_path):
    monkeypatch.delenv(cache.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = cache.cache_folder()
    if sys.platform.startswith("linux"):
        assert folder is not None and folder.parent == tmp_path / "dualad"
    assert Path(dualad.__file__).resolve().parent not in (folder or tmp_path).parents


def test_the_key_follows_dualad_version_and_the_function(monkeypatch):
    cache._engine_sources.cache_clear()  # the sources as they are now
    before = cache._engine_sources()
    monkeypatch.setattr(dualad, "__version__", "0.0.0-test")
    cache._engine_sources.cache_clear()
    try:
        assert cache._engine_sources() != before
    finally:
        monkeypatch.undo()
        cache._engine_sources.cache_clear()
    assert cache._engine_sources() == before

    namespace: dict = {"__name__": __name__}
    exec(textwrap.dedent("def f(x):\n    return x * A\n"), namespace)  # noqa: S102
    namespace["A"] = 1.0
    one = cache.function_key(namespace["f"])
    namespace["A"] = 2.0
    assert cache.function_key(namespace["f"]) != one
    namespace["A"] = [1.0, 2.0]  # lists, tuples and arrays by their contents
    listed = cache.function_key(namespace["f"])
    namespace["A"] = [1.0, 3.0]
    assert cache.function_key(namespace["f"]) != listed
    namespace["A"] = np.ones(3)
    ones = cache.function_key(namespace["f"])
    namespace["A"] = np.full(3, 2.0)
    assert cache.function_key(namespace["f"]) != ones
    assert cache.function_key(len) is None  # no Python code: not cached
    anonymous: dict = {}
    exec("def g(x):\n    return x\n", anonymous)  # noqa: S102
    assert cache.function_key(anonymous["g"]) is None  # no module to load it back from


def _scaled_tanh(x):
    return 2.5 * np.tanh(x) + (0.5, "a", frozenset({"b", "c"}))[0]


def _rules_key() -> str:
    digest = hashlib.sha256()
    cache._rules_digest(digest)
    return digest.hexdigest()


def test_the_key_covers_the_registered_rules_not_when_scipys_loaded(restore_rules):
    """SciPy's built-in rules are added on first use: keying every rule made a driver's key
    depend on whether this process had used SciPy yet, so later processes missed the cache.
    The built-in rules are dualad's source (the engine digest); registered ones change it."""
    before = _rules_key()
    dualad.rules._add(np.spacing, lambda x, y: 1.0 + 0.0 * x)  # as the SciPy rules are added
    assert _rules_key() == before
    dualad.register_rule(np.spacing, lambda x, y: 2.0 + 0.0 * x)
    assert _rules_key() != before


def _floor(x):
    return np.floor(x)


def _calling(rule_function):
    def f(x):
        return rule_function(x[0]) * x[1]

    return f


def test_the_key_of_a_function_calling_a_registered_function_is_its_content(restore_rules):
    """A registered plain function closes over its rule, whose repr holds function addresses:
    a function calling it had another key in every process (compiled again each time)."""
    keys = []
    for _ in range(2):  # the same registration twice: new function and rule objects
        snap = dualad.register_rule(_floor, _half_plus_one, name="snap")
        keys.append(cache.function_key(_calling(snap)))
    assert keys[0] == keys[1]
    other = dualad.register_rule(_floor, lambda x, y: 2.0 + 0.0 * x, name="snap")
    assert cache.function_key(_calling(other)) != keys[0]


def _half_plus_one(x, y):
    return 1.0 + 0.5 * x


def test_the_key_does_not_follow_reference_counts_or_hash_seeds(restore_rules):
    """Compiling a function takes references to its constants, and marshal marks an object it
    meets more than once by its reference count: a key made from marshal's bytes changed after
    any compilation, so the next process missed the cache.  The key reads the code itself."""
    dualad.register_rule(np.spacing, lambda x, y: (0.5, frozenset({"b", "c"}))[0] + 0.0 * x)
    key = cache.function_key(_scaled_tanh)
    rules_before = hashlib.sha256()
    cache._rules_digest(rules_before)
    held = [list(_scaled_tanh.__code__.co_consts) for _ in range(3)]  # what a compiler keeps
    held += [list(rule.partials) for rule in dualad.rules.RULES.values()]
    held += [
        fn.__code__.co_consts
        for rule in dualad.rules.RULES.values()
        for fn in rule.partials
        if hasattr(fn, "__code__")
    ]
    rules_after = hashlib.sha256()
    cache._rules_digest(rules_after)
    assert cache.function_key(_scaled_tanh) == key
    assert rules_after.hexdigest() == rules_before.hexdigest()
    del held
    # and the same in another process, whose string hashes (frozenset order) differ
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_numba_cache as t; "
        "from dualad.numba import cache; print(cache.function_key(t._scaled_tanh))"
    )
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        other = subprocess.run(
            [sys.executable, "-c", script, str(Path(__file__).parent)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert other.stdout.strip() == key


@pytest.mark.parametrize("setting", ["0", "OFF", "none", ""])
def test_off_spellings(monkeypatch, setting):
    monkeypatch.setenv(cache.ENV_VAR, setting)
    assert cache.cache_folder() is None


def test_a_sweep_over_n_reuses_a_wider_driver():
    """n = 30 (K = 10 by default) reuses the K = 12 driver of n = 36: three passes either way."""
    import numba
    import numpy as np

    import dualad as da
    import dualad.numba as dn

    @numba.njit
    def squares(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i] * x[i]
        return s

    x36, x30 = np.linspace(0.0, 1.0, 36), np.linspace(0.0, 1.0, 30)
    np.testing.assert_allclose(da.gradient(squares, x36), 2.0 * x36, rtol=1e-15)
    np.testing.assert_allclose(da.gradient(squares, x30), 2.0 * x30, rtol=1e-15)
    compiled = {K for g, kind, K in dn._drivers if g is squares}
    assert compiled == {12}
    assert dn.chunk_size_for(30) == 10  # what a fresh function would have compiled


def test_an_entry_that_will_not_load_means_compiling_without_the_cache(monkeypatch, tmp_path):
    import numba
    import numpy as np

    import dualad as da
    import dualad.numba as dn

    @numba.njit
    def halves(x):
        return 0.5 * x[0] * x[1]

    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(cache, "_disabled", [])
    real, failures = dn._call, []

    def first_load_fails(compiled, f, K, arguments, *kind):
        if not failures:
            failures.append(compiled)
            raise ImportError("No module named '<dynamic>'")  # what a stale environment gives
        return real(compiled, f, K, arguments, *kind)

    monkeypatch.setattr(dn, "_call", first_load_fails)
    with pytest.warns(UserWarning, match="could not load a compiled driver from its disk cache"):
        g = da.gradient(halves, np.array([2.0, 3.0]))
    np.testing.assert_array_equal(g, [1.5, 1.0])
    assert cache.cache_folder() is None  # the rest of the process compiles without it
    assert dn.driver(halves, "value_and_jacobian", 2) is not failures[0]


INNER_UNCACHED = """
import json, os, warnings
import numpy as np
import dualad as da
from user_function import squares

x = np.array([1.0, 2.0])
cache_dir = os.environ["DUALAD_CACHE_DIR"]
os.environ["DUALAD_CACHE_DIR"] = "off"
da.value_and_jacobian(squares, x)        # the inner driver, made without the cache
os.environ["DUALAD_CACHE_DIR"] = cache_dir
warnings.simplefilter("error")           # no 'could not load a compiled driver' warning
print(json.dumps({"jacobian": da.jacobian(squares, x).tolist()}))
"""


def test_an_outer_driver_is_not_loaded_around_an_inner_one_made_without_the_cache(tmp_path):
    """The disk entry of a driver built on another names that one's cache module: a process
    that made the inner driver with the cache off could not import it (it used to warn and
    turn the cache off)."""
    cache_dir = str(tmp_path / "cache")
    _write_user_module(tmp_path, 1.0)
    writes = "from user_function import squares\nda.jacobian(squares, np.array([1.0, 2.0]))\n"
    _run(tmp_path, cache_dir, RUN + writes)
    assert _run(tmp_path, cache_dir, INNER_UNCACHED)["jacobian"] == [[2.0, 0.0], [0.0, 4.0]]
