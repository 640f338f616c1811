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

Run as ``python bench/bench_rankers.py [--quick] [--tune|--tune-blends|--tune-blends-rp3|--compare|--speed]``
(results in ``bench/results/rankers[-part].json`` and ``.md``), or through ``bench/run.py --only rankers``.
``--quick`` shrinks the grids; ``--tune-blends`` reruns only the blends' grids of two
components; ``--tune-blends-rp3`` the blends with RP3beta (see :func:`tune_blends_more`);
``--speed`` times the user-based ranker's fit on the generated ML-1M-shape matrix, its
first version against the current one (see :func:`speed`). The datasets
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
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

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


class _Frozen:
    """A fitted component's score blocks for the evaluated users, computed once (for the
    blend grids: a blend then only normalises and adds them, as :class:`Blend` does)."""

    def __init__(self, model, users):
        self.user_items_ = model.user_items_
        self.n_items_ = model.user_items_.shape[1]
        self._pos = {int(u): j for j, u in enumerate(users)}
        self._scores = model.score(users)

    def _check_fitted(self):
        pass

    def _score_block(self, users):
        return self._scores[[self._pos[int(u)] for u in users]]


def tune_blends_more(quick: bool = False) -> dict:
    """Blends with RP3beta (default + RP3beta, default + user-based + RP3beta, user-based +
    RP3beta) × normalisations min-max / z-score / rank, on the validation splits; each
    component is fitted once per split and its scores reused across the weights."""
    from recommendations.engine import RP3BETA_PARAMS, Blend, RP3beta, default_recommender, user_based_ranker
    from recommendations.engine.evaluation import evaluate_topn

    val = _splits(validation=True)
    baseline = _ndcg(default_recommender, val)
    makers = {
        "default": default_recommender,
        "user_based": user_based_ranker,
        "rp3beta": lambda: RP3beta(**RP3BETA_PARAMS),
    }
    frozen = {}
    for p, s in val.items():
        for name, make in makers.items():
            t0 = time.perf_counter()
            frozen[p, name] = _Frozen(make().fit(s.train), s.users)
            print("fitted", p, name, f"{time.perf_counter() - t0:.1f}s", flush=True)
    step = 0.2 if quick else 0.1
    ticks = [round(step * i, 2) for i in range(1, round(1 / step))]
    groups = {
        ("default", "rp3beta"): [(w, round(1 - w, 2)) for w in ticks],
        ("user_based", "rp3beta"): [(w, round(1 - w, 2)) for w in ticks],
        ("default", "user_based", "rp3beta"): [
            (a, b, round(1 - a - b, 2)) for a in ticks for b in ticks if round(1 - a - b, 2) > 0
        ],
    }
    out = {"default_validation_ndcg@10": baseline}
    for names, weight_sets in groups.items():
        rows = []
        for weights, norm in itertools.product(weight_sets, ("minmax", "zscore", "rank")):
            ndcg = {}
            for p, s in val.items():
                blend = Blend([frozen[p, n] for n in names], list(weights), normalisation=norm, prefit=True)
                blend.fit(s.train)
                ndcg[p] = round(evaluate_topn(blend, s.train, s.relevant, users=s.users, fit=False)["ndcg@10"], 4)
            ratio = min(ndcg[p] / baseline[p] for p in PROTOCOLS)
            params = {"weights": list(weights), "normalisation": norm}
            rows.append({"params": params, "validation_ndcg@10": ndcg, "min_ratio_to_default": round(ratio, 4)})
            print(" + ".join(names), params, ndcg, round(ratio, 4), flush=True)
        best = max(rows, key=lambda r: r["min_ratio_to_default"])
        out["blend " + " + ".join(names)] = {"rows": rows, "chosen": best}
    return out


def _sparse_product_ranker():
    """``user_based_ranker()`` with the neighbour search of the first version (kept here
    only to time it against the current one): row chunks against the full sparse
    user × user product (and the overlaps' product), each chunk cut to its top k."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import scipy.sparse as sp

    from recommendations.engine import USER_RANKER_PARAMS, UserKNNRanker
    from recommendations.engine._base import chunks, n_threads_or_default
    from recommendations.engine.knn import _append_topk, _assemble

    class SparseProductRanker(UserKNNRanker):
        def _neighbours(self, x):
            n_users, n_items = x.shape
            xt = x.T.tocsr()
            b = sp.csr_matrix((np.ones(x.nnz), x.indices, x.indptr), shape=x.shape)
            bt = b.T.tocsr()
            sums = np.asarray(x.sum(axis=1)).ravel()
            sq = np.asarray(x.multiply(x).sum(axis=1)).ravel()
            if self.similarity == "pearson":
                mean = sums / max(n_items, 1)
                norm = np.sqrt(np.maximum(sq - n_items * mean**2, 0.0))
            else:
                mean = None
                norm = np.sqrt(sq)
            inv = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)

            def block(sl):
                s = (x[sl] @ xt).toarray()
                if mean is not None:
                    s -= n_items * np.outer(mean[sl], mean)
                s *= inv[sl, None]
                s *= inv[None, :]
                if self.shrinkage:
                    co = (b[sl] @ bt).toarray()
                    s *= co / (co + self.shrinkage)
                rows = np.arange(sl.start, sl.stop)
                s[rows - sl.start, rows] = 0.0
                np.maximum(s, 0.0, out=s)
                if self.exponent != 1.0:
                    np.power(s, self.exponent, out=s)
                data, indices, indptr = [], [], [0]
                _append_topk(s, self.k, data, indices, indptr)
                return data, indices, np.diff(indptr)

            step = max(1, int(32 * 2**20 // (8 * max(1, n_users))))
            parts = list(chunks(n_users, step))
            workers = min(n_threads_or_default(self.n_threads), len(parts))
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    done = list(pool.map(block, parts))
            else:
                done = [block(sl) for sl in parts]
            data = [d for part in done for d in part[0]]
            indices = [i for part in done for i in part[1]]
            counts = np.concatenate([part[2] for part in done])
            indptr = np.r_[0, np.cumsum(counts)]
            return _assemble(data, indices, indptr, (n_users, n_users), np.float64)

    return SparseProductRanker(**USER_RANKER_PARAMS)


def speed(quick: bool = False) -> dict:
    """``user_based_ranker()`` fit and top-20 for every user on the generated ML-1M-shape
    matrix (bench_engine's second speed case), with the first version's neighbour search
    (one full sparse product per chunk of rows) and the current one (symmetric tiles
    merged into a running top-k) in the same run, and whether their neighbours agree."""
    import numpy as np
    from bench_engine import generated_matrix

    from recommendations.engine import default_recommender, user_based_ranker

    shape = (2000, 3706, 330_000) if quick else (6040, 3706, 1_000_209)
    r = generated_matrix(*shape)
    users = np.arange(r.shape[0])
    out = {"shape": list(shape)}
    fitted = {}
    for name, make in (
        ("default (PureSVD)", default_recommender),
        ("user_based_ranker(), first version (full sparse product)", _sparse_product_ranker),
        ("user_based_ranker() (symmetric tiles, running top-k)", user_based_ranker),
    ):
        runs = []
        for _ in range(1 if quick else 2):  # the machine is shared: each run twice, both kept
            t0 = time.perf_counter()
            model = make().fit(r)
            t1 = time.perf_counter()
            model.recommend(users, n=20)
            t2 = time.perf_counter()
            runs.append((round(t1 - t0, 2), round(t2 - t1, 2)))
        out[name] = {
            "fit_seconds": [f for f, _ in runs],
            "recommend_20_all_users_seconds": [r_ for _, r_ in runs],
        }
        print(name, out[name], flush=True)
        fitted[name] = model
    old, new = (m.similarity_ for n, m in fitted.items() if n.startswith("user"))
    out["neighbours_max_abs_difference"] = float(abs(old - new).max())
    out["same_neighbour_sets"] = bool((old.indptr == new.indptr).all() and (old.indices == new.indices).all())
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
        "blend_ranker(('default', 'rp3beta'))": lambda: blend_ranker(("default", "rp3beta")),
        "blend_ranker(('user_based', 'rp3beta'))": lambda: blend_ranker(("user_based", "rp3beta")),
        "blend_ranker(('default', 'user_based', 'rp3beta'))": lambda: blend_ranker(
            ("default", "user_based", "rp3beta")
        ),
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
    if "speed" in parts:
        out["speed"] = speed(quick)
        return out
    if not (DATASETS / "ml-100k" / "u.data").exists():
        out["datasets"] = f"not found at {DATASETS}; nothing measured"
        return out
    if "tune-blends-rp3" in parts:
        out["tuning"] = tune_blends_more(quick)
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
    for flag in ("--tune", "--tune-blends", "--tune-blends-rp3", "--compare", "--speed"):
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
    if "speed" in res:
        lines += [f"- {k}: {v}" for k, v in res["speed"].items()]
    (results / f"rankers{suffix}.md").write_text("\n".join(lines))
    print("\n".join(lines))
