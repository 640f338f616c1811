#!/usr/bin/env python
"""Run the project's benchmarks and write their figures to bench/results/ (JSON and a table).

Each bench/bench_<name>.py (and each quality evaluation bench/eval_<name>.py) exposes
`run(quick: bool = False) -> dict`; its figures go to results/<name>.json. Usage:
    python bench/run.py [--quick] [--only ingest,engine]

Floors (issue #19). Beside each hot path a bench measures, in the same run, its floor: the cheapest
way to do the same work (a raw COPY of the very rows our import stored, into the same table with its
indexes and keys; an endpoint that only parses the same JSON and COPYs). A bench's figures may hold

    "floors": [{"path": str,         # the hot path, e.g. "CSV import, Online Retail"
                "floor_label": str,  # what the floor is, e.g. "raw COPY of the stored rows"
                "floor": float,      # the floor's figure, in `unit`
                "ours": float,       # ours, in the same unit, measured in the same run
                "unit": str,         # e.g. "events/s", "ms CPU per batch"
                "ratio": float,      # ours / floor for a rate, floor / ours for a cost: 1.0 = the floor
                "target": str,       # e.g. ">= 60% of the floor", "<= 10 ms"
                "met": bool,
                "profile": str | None,  # a missed target: its cProfile text, relative to bench/
                "note": str}]        # how it was measured, what is left out

(`bench/floors.py`'s `floor_entry` builds one). This script gathers every bench's entries into
bench/results/floors.md, a table path | floor | ours | ratio | target | met, and prints it at the
end. A bench whose target is missed saves a cProfile of that path under bench/results/profiles/
(`floors.save_stats`: `<name>.pstats`, loadable with pstats, and `<name>.txt`, the top 25 functions
by cumulative and by own time) and names the .txt in `profile`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flatten(prefix: str, value, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, rows)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, sub in enumerate(value):
            _flatten(f"{prefix}[{i}]", sub, rows)
    else:
        if isinstance(value, float):
            value = f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
        rows.append((prefix, str(value)))


def _number(value: float, unit: str) -> str:
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    return f"{text} {unit}"


def floors_table(summary: dict) -> str:
    """The floor entries of every bench (see the module docstring) as one markdown table; "" if none."""
    rows, notes = [], []
    for name, bench in summary["benches"].items():
        figures = bench.get("figures")
        for f in figures.get("floors", []) if isinstance(figures, dict) else []:
            met = "yes" if f["met"] else "**no**" + (f" (profile: `{f['profile']}`)" if f.get("profile") else "")
            rows.append(
                f"| {f['path']} ({name}) | {f['floor_label']}: {_number(f['floor'], f['unit'])} "
                f"| {_number(f['ours'], f['unit'])} | {f['ratio']:.0%} | {f['target']} | {met} |"
            )
            if f.get("note"):
                notes.append(f"- {f['path']}: {f['note']}")
    if not rows:
        return ""
    stamp = summary["started"] + (" (quick)" if summary.get("quick") else "")
    return "\n".join(
        [
            f"# Floors {stamp}",
            "",
            "ratio: ours / floor for a rate, floor / ours for a cost (100% = as fast as the floor).",
            "",
            "| path | floor | ours | ratio | target | met |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            *notes,
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Smaller sizes, for a smoke run.")
    parser.add_argument("--only", default="", help="Comma-separated bench names (e.g. ingest,engine).")
    args = parser.parse_args()
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    summary = {
        "started": stamp,
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "benches": {},
    }
    failed = False
    # bench_*.py measure speed; eval_*.py measure quality (e.g. eval_affinity.py: affinity.json)
    for path in [*sorted(HERE.glob("bench_*.py")), *sorted(HERE.glob("eval_*.py"))]:
        name = path.stem.removeprefix("bench_").removeprefix("eval_")
        if only and name not in only:
            continue
        print(f"== bench {name}", flush=True)
        started = time.monotonic()
        try:
            figures = _load(path).run(quick=args.quick)
            status = "ok"
        except Exception:  # a failing bench is reported, the others still run
            figures = {"error": traceback.format_exc()}
            status = "failed"
            failed = True
        summary["benches"][name] = {
            "status": status,
            "seconds": round(time.monotonic() - started, 1),
            "figures": figures,
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(summary["benches"][name], indent=2, default=str))
        print(json.dumps(figures, indent=2, default=str)[:4000], flush=True)
    (RESULTS / f"summary-{stamp}.json").write_text(json.dumps(summary, indent=2, default=str))
    (RESULTS / "latest.json").write_text(json.dumps(summary, indent=2, default=str))
    lines = [f"# Benchmark results {stamp}{' (quick)' if args.quick else ''}", ""]
    for name, bench in summary["benches"].items():
        lines += [f"## {name} ({bench['status']}, {bench['seconds']} s)", "", "| figure | value |", "| --- | --- |"]
        rows: list[tuple[str, str]] = []
        _flatten("", bench["figures"], rows)
        lines += [f"| {k} | {v.splitlines()[-1] if v else v} |" for k, v in rows]
        lines.append("")
    (RESULTS / "latest.md").write_text("\n".join(lines))
    print(f"results written to {RESULTS}/latest.json and latest.md")
    floors = floors_table(summary)
    if floors:
        (RESULTS / "floors.md").write_text(floors)
        print(floors)
        print(f"floor table written to {RESULTS}/floors.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
