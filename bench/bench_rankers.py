#!/usr/bin/env python
"""The recommender configurations side by side, and how the rankers' defaults were chosen (issue #20).

``run(quick=False) -> dict`` returns JSON-serialisable figures:

- ``tuning``: grids of the user-based ranker, the item-based ranker and the blends'
  weights, each scored on the *validation* splits carved from the training data
  (``load_protocol(..., validation=True)``: ML-100K each user's 10 ratings before the
  test ones; Online Retail October 2011, trained on what came before). A configuration's
  figure is the smaller of its two ratios to the product default's validation NDCG@10
  (one set of defaults must serve both kinds of shop); the best one per grid is
  ``chosen``, and its test figures are not looked at while choosing.
- ``compare``: every configuration on the two test protocols (ML-100K last 10, Online
  Retail time split with the product's 14-day decay): NDCG@10, precision, recall, MAP,
  hit rate, coverage, novelty, fit and recommend seconds; plus the targets of issue #20
  (user-based ranker >= 0.9x the default, a blend >= the default, on both).

``compare`` uses the factories' defaults (``user_based_ranker()``, ``item_based_ranker()``,
``blend_ranker()``): rerun ``--tune`` after changing the engine, and copy its ``chosen``
parameters into ``recommendations/engine/__init__.py`` if they move.

Run as ``python bench/bench_rankers.py [--quick] [--tune|--tune-blends|--compare]`` (results in
``bench/results/rankers.json`` and ``rankers.md``), or through ``bench/run.py --only rankers``.
``--quick`` shrinks the grids; ``--tune-blends`` reruns only the blends' grids. The datasets
are read from ``DATASETS_DIR`` (default ``<repo>/../shared/datasets``).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATASETS = Path(os.environ.get("DATASETS_DIR", REPO.parent / "shared" / "datasets"))
PROTOCOLS = ("ml-100k", "online-retail")


def _splits(validation: bool) -> dict:
    from recommendations.engine.evaluation import load_protocol

    return {name: load_protocol(name, DATASETS, validation=validation) for name in PROTOCOLS}


def _ndcg(make, splits) -> dict:
    from recommendations.engine.evaluation import evaluate_topn

    return {
        name: round(evaluate_topn(make(), s.train, s.relevant, users=s.users)["ndcg@10"], 4)
        for name, s in splits.items()
    }


def _grid(name: str, make, grid: dict, splits, baseline: dict) -> dict:
    rows = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        t0 = time.perf_counter()
        ndcg = _ndcg(lambda p=params: make(**p), splits)
        ratio = min(ndcg[p] / baseline[p] for p in PROTOCOLS)
        rows.append({"params": params, "validation_ndcg@10": ndcg, "min_ratio_to_default": round(ratio, 4)})
        print(name, params, ndcg, round(ratio, 4), f"{time.perf_counter() - t0:.1f}s", flush=True)
    best = max(rows, key=lambda r: r["min_ratio_to_default"])
    return {"grid": grid, "rows": rows, "chosen": best}


def tune(quick: bool = False, blends_only: bool = False) -> dict:
    """Grids on the validation splits (see module docstring); ``blends_only`` skips the
    user- and item-based grids (after their chosen parameters were copied into the factories)."""
    from recommendations.engine import (
        Blend,
        ItemKNN,
        UserKNNRanker,
        default_recommender,
        item_based_ranker,
        user_based_ranker,
    )

    val = _splits(validation=True)
    baseline = _ndcg(default_recommender, val)
    out = {"default_validation_ndcg@10": baseline}
    # a first pass found beta 0.5 and k 50 always worse, so the grid stops before them
    user_grid = {
        "similarity": ["cosine", "pearson"],
        "k": [100, 200] if quick else [100, 200, 400],
        "shrinkage": [0, 20] if quick else [0, 10, 20, 50],
        "exponent": [1.0, 2.0],
        "beta": [0.0, 0.3] if quick else [0.0, 0.2, 0.3],
    }
    if not blends_only:
        out["user_based"] = _grid(
            "user", lambda **p: UserKNNRanker(value_transform="log1p", n_threads=1, **p), user_grid, val, baseline
        )
    item_grid = {
        "k": [100] if quick else [50, 100, 200],
        "shrinkage": [0, 10] if quick else [0, 10, 50],
        "value_transform": ["none", "log1p", "binary"],
    }

    def item(value_transform, **p):
        binary = value_transform == "binary"
        return ItemKNN(
            similarity="cosine", binary=binary, value_transform="none" if binary else value_transform, n_threads=1, **p
        )

    if not blends_only:
        out["item_based"] = _grid("item", item, item_grid, val, baseline)
    # the blends combine the factories' current defaults, so rerun after copying the chosen parameters
    parts = {"user_based": user_based_ranker, "item_based": item_based_ranker, "default": default_recommender}
    weights = [0.3, 0.5, 0.7] if quick else [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    for a, b in (("user_based", "item_based"), ("user_based", "default")):
        grid = {"weight_of_first": weights, "normalisation": ["minmax", "zscore"]}

        def blend(weight_of_first, normalisation, a=a, b=b):
            return Blend([parts[a](), parts[b]()], [weight_of_first, 1 - weight_of_first], normalisation=normalisation)

        out[f"blend {a} + {b}"] = _grid(f"blend {a}+{b}", blend, grid, val, baseline)
    return out


def configurations() -> dict:
    """Name -> factory of every configuration compared on the test protocols."""
    from recommendations.engine import (
        ItemKNN,
        Popularity,
        RP3beta,
        UserKNN,
        blend_ranker,
        default_recommender,
        item_based_ranker,
        user_based_ranker,
    )

    return {
        "default (PureSVD)": default_recommender,
        "user_based_ranker()": user_based_ranker,
        "item_based_ranker()": item_based_ranker,
        "blend_ranker() (user + item)": blend_ranker,
        "blend_ranker(('user_based', 'default'))": lambda: blend_ranker(("user_based", "default")),
        "RP3beta": lambda: RP3beta(alpha=0.5, beta=0.5, k=100, binary=False, value_transform="log1p"),
        "popularity": Popularity,
        "ItemKNN (old registry: cosine, k 100)": lambda: ItemKNN(k=100, similarity="cosine"),
        "UserKNN rating mode (mean-centred, cosine, k 40, global)": lambda: UserKNN(
            k=40, similarity="cosine", neighbourhood="global"
        ),
    }


def compare() -> dict:
    """Every configuration on the two test protocols, with the issue's targets."""
    from recommendations.engine.evaluation import format_table, run_protocol

    out = {}
    for name in PROTOCOLS:
        res = run_protocol(name, DATASETS, algorithms=configurations())
        res["table"] = format_table(res)
        out[name] = res
    ndcg = {p: {a: round(m["ndcg@10"], 4) for a, m in out[p]["results"].items()} for p in PROTOCOLS}
    default = {p: ndcg[p]["default (PureSVD)"] for p in PROTOCOLS}
    user = {p: ndcg[p]["user_based_ranker()"] for p in PROTOCOLS}
    blends = [a for a in ndcg["ml-100k"] if a.startswith("blend")]
    return {
        "ndcg@10": ndcg,
        "targets": {
            "user_based_ratio_to_default": {p: round(user[p] / default[p], 3) for p in PROTOCOLS},
            "user_based_meets_0.9x_on_both": all(user[p] >= 0.9 * default[p] for p in PROTOCOLS),
            "blends_at_or_above_default_on_both": [
                b for b in blends if all(ndcg[p][b] >= default[p] for p in PROTOCOLS)
            ],
        },
        "protocols": out,
    }


def run(quick: bool = False, parts=("tune", "compare")) -> dict:
    started = time.perf_counter()
    out = {"quick": quick, "cpu_count": os.cpu_count()}
    if not (DATASETS / "ml-100k" / "u.data").exists():
        out["datasets"] = f"not found at {DATASETS}; nothing measured"
        return out
    if "tune" in parts or "tune-blends" in parts:
        out["tuning"] = tune(quick, blends_only="tune" not in parts)
    if "compare" in parts:
        out["compare"] = compare()
    out["bench_seconds"] = time.perf_counter() - started
    return out


def _jsonable(x):
    import numpy as np

    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


if __name__ == "__main__":
    args = sys.argv[1:]
    parts = ("tune", "compare")
    for flag in ("--tune", "--tune-blends", "--compare"):
        if flag in args:
            parts = (flag[2:],)
    res = _jsonable(run(quick="--quick" in args, parts=parts))
    tables = {k: v.pop("table") for k, v in res.get("compare", {}).get("protocols", {}).items()}
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    suffix = "" if parts == ("tune", "compare") else "-" + parts[0]
    (results / f"rankers{suffix}.json").write_text(json.dumps(res, indent=2))
    lines = [f"# Recommender configurations ({', '.join(parts)})", ""]
    for key in ("tuning",):
        for grid, g in res.get(key, {}).items():
            if isinstance(g, dict) and "chosen" in g:
                lines.append(f"- {grid}: chosen {g['chosen']}")
    lines += ["", *(f"```\n{t}\n```\n" for t in tables.values())]
    if "compare" in res:
        lines.append("targets: " + json.dumps(res["compare"]["targets"]))
    (results / f"rankers{suffix}.md").write_text("\n".join(lines))
    print("\n".join(lines))
