#!/usr/bin/env python
"""Run the project's benchmarks and write their figures to bench/results/ (JSON and a table).

Each bench/bench_<name>.py (and each quality evaluation bench/eval_<name>.py) exposes
`run(quick: bool = False) -> dict`; its figures go to results/<name>.json. Usage:
    python bench/run.py [--quick] [--only ingest,engine]
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
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
