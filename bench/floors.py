"""Helpers for the floor table (issue #19): a bench's floor entries and the profile of a missed target.

A floor is the cheapest way to do the same work (a raw COPY of the same rows, an endpoint that only
parses and COPYs), measured in the same run as our path; `bench/run.py` gathers every bench's
entries into bench/results/floors.md. See bench/run.py's docstring for the convention.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import re
from collections.abc import Callable
from pathlib import Path

PROFILES = Path(__file__).resolve().parent / "results" / "profiles"
TOP_LINES = 25


def floor_entry(
    *,
    path: str,
    floor_label: str,
    floor: float,
    ours: float,
    unit: str,
    target: str,
    met: bool,
    profile: str | None = None,
    note: str = "",
    higher_is_better: bool = True,
) -> dict:
    """One row of the floor table. `ratio` is ours / floor for a rate (higher is better) and
    floor / ours for a cost (time, CPU: lower is better), so 1.0 is always "as fast as the floor"."""
    if higher_is_better:
        ratio = ours / floor if floor else 0.0
    else:
        ratio = floor / ours if ours else 0.0
    return {
        "path": path,
        "floor_label": floor_label,
        "floor": round(float(floor), 3),
        "ours": round(float(ours), 3),
        "unit": unit,
        "ratio": round(ratio, 3),
        "target": target,
        "met": bool(met),
        "profile": profile,
        "note": note,
    }


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def save_stats(name: str, stats_source: cProfile.Profile | str | Path, *, header: str = "") -> str:
    """Save a cProfile (a Profile or a file written by `python -m cProfile -o`) under
    bench/results/profiles/: `<name>.pstats` (load with pstats.Stats) and `<name>.txt` (the top
    TOP_LINES functions by cumulative and by own time). Returns the .txt path, relative to bench/."""
    PROFILES.mkdir(parents=True, exist_ok=True)
    base = PROFILES / _slug(name)
    if isinstance(stats_source, cProfile.Profile):
        stats_source.dump_stats(str(base.with_suffix(".pstats")))
    else:
        Path(base.with_suffix(".pstats")).write_bytes(Path(stats_source).read_bytes())
    out = io.StringIO()
    if header:
        out.write(header.rstrip() + "\n\n")
    for order in ("cumulative", "tottime"):
        out.write(f"== top {TOP_LINES} by {order}\n")
        stats = pstats.Stats(str(base.with_suffix(".pstats")), stream=out)
        stats.strip_dirs().sort_stats(order).print_stats(TOP_LINES)
    base.with_suffix(".txt").write_text(out.getvalue())
    return str(base.with_suffix(".txt").relative_to(PROFILES.parent.parent))


def profile_call(name: str, fn: Callable[[], object], *, header: str = "") -> str:
    """Run ``fn`` once under cProfile and save it as `save_stats` does; the .txt path."""
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    return save_stats(name, prof, header=header)
