"""Floors beside hot paths (issue #19): a row of the floors table, and the cProfile of a missed target.

A bench's figures may hold ``"floors": [floor_row(...), ...]``; ``bench/run.py`` collects them into
the path | floor | ours | ratio | target table. Where a target is missed, the bench profiles one run
of its path with :func:`profile_call`, which saves the pstats dump and its top 25 lines by
cumulative time under ``bench/results/profiles/`` and returns the text file's path for ``"profile"``.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Callable
from pathlib import Path

PROFILES = Path(__file__).resolve().parent / "results" / "profiles"


def floor_row(
    *,
    path: str,
    floor_label: str,
    floor: float,
    ours: float,
    target: str,
    met: bool,
    unit: str = "s",
    profile: str | None = None,
    note: str = "",
) -> dict:
    """One row of the floors table; ``ratio`` is ours / floor (how far above the floor we are)."""
    return {
        "path": path,
        "floor_label": floor_label,
        "floor": round(float(floor), 4),
        "ours": round(float(ours), 4),
        "unit": unit,
        "ratio": round(float(ours) / float(floor), 2) if floor else None,
        "target": target,
        "met": bool(met),
        "profile": profile,
        "note": note,
    }


def profile_call(name: str, fn: Callable[[], object]) -> str:
    """Run ``fn`` once under cProfile; save ``<name>.pstats`` and ``<name>.txt`` (top 25 by
    cumulative time, then top 25 by own time); return the text file's path (relative to the repo)."""
    PROFILES.mkdir(parents=True, exist_ok=True)
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    dump = PROFILES / f"{name}.pstats"
    prof.dump_stats(str(dump))
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(25)
    text = PROFILES / f"{name}.txt"
    text.write_text(out.getvalue())
    return str(text.relative_to(PROFILES.parent.parent.parent))
