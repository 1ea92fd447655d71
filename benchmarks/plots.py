"""Figures of the forward-against-reverse benchmark: one per family and one summary.

Kept apart from the harness so that the timing code reads on its own.  dualad's engines are drawn
bold in colour-blind-safe colours (Okabe-Ito), the peers thin and grey, each peer as the best of
its modes; guide lines show the slopes of a cost that grows like n and of one that does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# (label, colour, line style, marker) of dualad's engines: bold
OURS = {
    "dualad-fwd": ("dualad forward (NumPy)", "#0072B2", "-", "o"),
    "dualad-rev": ("dualad reverse (NumPy)", "#D55E00", "-", "s"),
    "dualad-fwd-numba": ("dualad forward (Numba)", "#56B4E9", "--", "o"),
    "dualad-rev-numba": ("dualad reverse (Numba)", "#CC79A7", "--", "s"),
}
# peers: each drawn once, as the best of its engines at every n, thin and muted
PEERS = {
    "JAX jit (best of jacfwd, jacrev)": (("jax-jacfwd", "jax-jacrev"), "#555555", "-", "^"),
    "PyTorch func (best of jacfwd, jacrev)": (
        ("torch-jacfwd", "torch-jacrev"),
        "#888888",
        "-",
        "v",
    ),
    "autograd": (("autograd",), "#AAAAAA", "-", "D"),
    "central differences": (("fd",), "#AAAAAA", ":", None),
    "f itself (NumPy)": (("f",), "#000000", ":", None),
}
SHAPES = {"scalar": "R^n -> R", "square": "R^n -> R^n", "wide": "R^n -> R^3", "tall": "R^3 -> R^n"}
FAMILY_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


def _matplotlib() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _series(rows: list[dict[str, Any]], family: str, keys: Sequence[str], field: str) -> list:
    """(n, value, q25, q75) at every n, the best (smallest median) of ``keys`` there."""
    best: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r["family"] == family and r["engine"] in keys and r["status"] == "ok":
            if r["n"] not in best or r["median_s"] < best[r["n"]]["median_s"]:
                best[r["n"]] = r
    out = []
    for n in sorted(best):
        r = best[n]
        value = r[field] if field != "median_s" else r["median_s"]
        if value is None or value <= 0:
            continue
        out.append((n, value, r.get("q25_s") or value, r.get("q75_s") or value))
    return out


def _guides(ax: Any, points: list[tuple[float, float]]) -> None:
    """Two short grey segments below the data: the slope of a cost ∝ n and of one ∝ 1."""
    if len(points) < 2:
        return
    ns = sorted({n for n, _ in points})
    n0, n1 = ns[len(ns) // 2], ns[-1]
    if n1 <= n0:
        return
    t0 = min(t for _, t in points) / 3.0
    style = {"color": "#999999", "lw": 1.0, "zorder": 1}
    ax.loglog([n0, n1], [t0, t0 * n1 / n0], **style)
    ax.loglog([n0, n1], [t0, t0], **style)
    ax.annotate("slope ∝ n", (n1, t0 * n1 / n0), fontsize=8, color="#777777", ha="right", va="top")
    ax.annotate("∝ 1", (n1, t0), fontsize=8, color="#777777", ha="right", va="top")


def family_figure(
    rows: list[dict[str, Any]],
    family: str,
    kind: str,
    crossover: tuple[int, bool | None] | None,
    caption: str,
    path: Path,
) -> Path | None:
    """Time per Jacobian (top) and first-call time (bottom) against n, for one family."""
    plt = _matplotlib()
    if plt is None:
        return None
    fig, (ax, ax2) = plt.subplots(
        2, 1, figsize=(10, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    drawn: list[tuple[float, float]] = []
    for key, (label, colour, style, marker) in OURS.items():
        pts = _series(rows, family, (key,), "median_s")
        if not pts:
            continue
        ns, ts, lo, hi = zip(*pts)
        ax.loglog(ns, ts, style, color=colour, lw=2.6, marker=marker, ms=5, label=label, zorder=3)
        ax.fill_between(ns, lo, hi, color=colour, alpha=0.18, lw=0, zorder=2)
        drawn += list(zip(ns, ts))
        first = _series(rows, family, (key,), "first_call_s")
        if first:
            fn, ft, _, _ = zip(*first)
            ax2.loglog(fn, ft, style, color=colour, lw=2.0, marker=marker, ms=4, label=label)
    for label, (keys, colour, style, marker) in PEERS.items():
        pts = _series(rows, family, keys, "median_s")
        if not pts:
            continue
        ns, ts, _, _ = zip(*pts)
        ax.loglog(ns, ts, style, color=colour, lw=1.1, marker=marker, ms=3.5, label=label)
        if keys[0].startswith(("jax", "torch")):
            first = _series(rows, family, keys, "first_call_s")
            if first:
                fn, ft, _, _ = zip(*first)
                ax2.loglog(fn, ft, style, color=colour, lw=1.0, marker=marker, ms=3, label=label)
    _guides(ax, drawn)
    if crossover is not None:
        n, clear = crossover
        ax.axvline(n, color="#D55E00", lw=1.0, ls="--", alpha=0.8)
        note = " (within the repeat spread)" if clear is False else ""
        ax.annotate(
            f"reverse faster\nfrom n = {n:,}{note}",
            (n, 0.97),
            xycoords=("data", "axes fraction"),
            xytext=(5, 0),
            textcoords="offset points",
            fontsize=8,
            color="#D55E00",
            va="top",
        )
    what = "gradient" if kind == "scalar" else "Jacobian"
    ax.set_title(f"{family}: {what} of f: {SHAPES[kind]}, forward against reverse mode")
    ax.set_ylabel(f"time per {what} (s, median;\nband: quartiles of the repeats)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax2.set_ylabel("first call (s):\nincl. compilation")
    ax2.set_xlabel("n (outputs)" if kind == "tall" else "n (inputs)")
    ax2.grid(True, which="both", alpha=0.25)
    fig.text(0.01, 0.005, caption, fontsize=7.5, color="#555555", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def summary_figure(
    rows: list[dict[str, Any]],
    families: Sequence[str],
    crossovers: dict[str, tuple[int, bool | None] | None],
    caption: str,
    path: Path,
) -> Path | None:
    """time(forward) / time(reverse) of dualad's NumPy engine against n, one line per family:
    above 1, reverse mode is the faster one."""
    plt = _matplotlib()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, family in enumerate(families):
        fwd = {n: t for n, t, _, _ in _series(rows, family, ("dualad-fwd",), "median_s")}
        rev = {n: t for n, t, _, _ in _series(rows, family, ("dualad-rev",), "median_s")}
        ns = sorted(set(fwd) & set(rev))
        if not ns:
            continue
        colour = FAMILY_COLOURS[i % len(FAMILY_COLOURS)]
        ratios = [fwd[n] / rev[n] for n in ns]
        ax.loglog(ns, ratios, "-", color=colour, lw=2.2, marker="o", ms=4, label=family)
        found = crossovers.get(family)
        if found is not None:
            n = found[0]
            if n in fwd and n in rev:
                ax.plot([n], [fwd[n] / rev[n]], "o", ms=11, mfc="none", mec=colour, mew=1.8)
    ax.axhline(1.0, color="#333333", lw=1.0)
    where = {"xycoords": ("axes fraction", "data"), "textcoords": "offset points", "fontsize": 9}
    ax.annotate("reverse faster ↑", (0.01, 1.0), xytext=(0, 4), va="bottom", **where)
    ax.annotate("forward faster ↓", (0.01, 1.0), xytext=(0, -4), va="top", **where)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    low, high = ax.get_ylim()
    subs = (1.0,) if high / low > 100 else (1.0, 2.0, 5.0)  # labels at 1-2-5 on a short axis
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("n (the growing dimension: inputs, or outputs for tall)")
    ax.set_ylabel("time(forward) / time(reverse)")
    ax.set_title("When reverse mode pays: dualad's NumPy engine, the same rules both ways\n"
                 "(circled: the measured crossover)")  # fmt: skip
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=9, frameon=False, loc="best")
    fig.text(0.01, 0.005, caption, fontsize=7.5, color="#555555", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
