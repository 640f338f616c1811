#!/usr/bin/env python
"""The sequence model against the order-blind ones on temporal protocols (issue #18): docs/engine.md.

``run(quick=False) -> dict`` evaluates, side by side in one run and on the same training data:

- ``sasrec``: :class:`recommendations.engine.SASRec` with ``SASREC_PARAMS`` (fed each pair's latest
  event time, so each history is ordered);
- the engine's order-blind models: the default (PureSVD), ``user_based_ranker()``, RP3beta and the
  default + RP3beta blend (the best of them per protocol is the target's yardstick);
- implicit's ALS (64 factors, as in docs/engine.md's tables).

Four temporal protocols (``PROTOCOLS``):

- ``ml-100k-last10``: each user's last 10 ratings by time are the test (relevant: rated >= 4), as
  ``load_protocol("ml-100k")``;
- ``online-retail-time``: trained before 2011-11-01, relevant the items each customer bought from
  then on and never before, lines decayed with the product's 14-day half-life, as
  ``load_protocol("online-retail")``;
- ``ml-100k-lastout`` and ``online-retail-lastout``: leave-last-out, each user's most recently
  discovered item (``last_items_holdout``, ``n_holdout=1``; users with at least 5 items) is the test,
  every other pair trains (ML-100K: every rating counts as a discovery; Online Retail: every line,
  whole period, 14-day decay from the last line).

``tune``: SASRec's parameters chosen on validation splits carved from each protocol's training data
(last 10 → the 10 before; the time split → October 2011; leave-last-out → the item discovered
before the held-out one), never on the test; the number of epochs is read off one fit per setting
(NDCG@10 after every few epochs).

Run as ``python bench/eval_sequence.py [--quick] [--tune]`` (results in
``bench/results/sequence[-tune].json``), or through ``bench/run.py --only sequence``. The datasets are
read from ``DATASETS_DIR`` (default ``<repo>/../shared/datasets``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATASETS = Path(os.environ.get("DATASETS_DIR", REPO.parent / "shared" / "datasets"))
RESULTS = HERE / "results"
PROTOCOLS = ("ml-100k-last10", "online-retail-time", "ml-100k-lastout", "online-retail-lastout")
K = 10
N_THREADS = 2
#: SASRec as evaluated (chosen by ``--tune`` on the validation splits; see docs/engine.md).
SASREC_PARAMS = {}  # the engine's SASREC_PARAMS, overridden here when a run says so
LASTOUT_MIN_ITEMS = 5


class Split:
    """A protocol's training matrix, its pairs' latest times, the relevant items, the users scored."""

    def __init__(self, name, train, timestamps, relevant):
        self.name = name
        self.train = sp.csr_matrix(train)
        self.timestamps = sp.csr_matrix(timestamps)
        self.relevant = sp.csr_matrix(relevant)
        self.users = np.flatnonzero(np.diff(self.relevant.indptr) > 0)


def _times_of(split) -> sp.csr_matrix:
    """The engine split's per-entry latest times as a matrix of the training matrix's pattern."""
    return sp.csr_matrix((split.train_timestamps, split.train.indices, split.train.indptr), shape=split.train.shape)


def _movielens_events():
    from recommendations.engine.evaluation import load_movielens_ratings

    df = load_movielens_ratings(DATASETS / "ml-100k" / "u.data")
    users, u = np.unique(df.user.to_numpy(), return_inverse=True)
    items, i = np.unique(df.item.to_numpy(), return_inverse=True)
    return u, i, df.rating.to_numpy(dtype=float), df.timestamp.to_numpy(dtype=np.float64), (len(users), len(items))


def _retail_events():
    from recommendations.engine.evaluation import load_online_retail

    df = load_online_retail(DATASETS / "online-retail" / "online_retail.csv.gz")
    users, u = np.unique(df.customer.to_numpy(), return_inverse=True)
    items, i = np.unique(df.item.to_numpy(), return_inverse=True)
    secs = df.timestamp.to_numpy().astype("datetime64[s]").astype(np.int64).astype(np.float64)
    return u, i, None, secs, (len(users), len(items))


def _lastout(name: str, events, validation: bool) -> Split:
    """Leave-last-out on the given events; ``validation`` repeats it inside the training events."""
    from recommendations.engine import DEFAULT_HALF_LIFE_DAYS, build_interactions, last_items_holdout, pair_matrix

    u, i, values, t, shape = events
    n_users, n_items = shape
    relevant, keep = last_items_holdout(
        u, i, t, np.ones(len(u), bool), n_holdout=1, min_items=LASTOUT_MIN_ITEMS, n_users=n_users, n_items=n_items
    )
    if validation:
        u, i, t = u[keep], i[keep], t[keep]
        values = None if values is None else values[keep]
        relevant, keep = last_items_holdout(
            u,
            i,
            t,
            np.ones(len(u), bool),
            n_holdout=1,
            min_items=LASTOUT_MIN_ITEMS - 1,
            n_users=n_users,
            n_items=n_items,
        )
    u, i, t = u[keep], i[keep], t[keep]
    if values is not None:  # ratings, the latest one of a pair wins
        train = build_interactions(u, i, values[keep], t, n_users=n_users, n_items=n_items, explicit=True)
    else:
        train = build_interactions(
            u, i, None, t, half_life_days=DEFAULT_HALF_LIFE_DAYS, n_users=n_users, n_items=n_items
        )
    times = pair_matrix(u, i, t, n_users=n_users, n_items=n_items, agg="max")
    return Split(name, train, times, relevant)


def load_split(name: str, validation: bool = False) -> Split:
    from recommendations.engine.evaluation import load_protocol

    if name == "ml-100k-last10":
        s = load_protocol("ml-100k", DATASETS, validation=validation)
        return Split(name, s.train, _times_of(s), s.relevant)
    if name == "online-retail-time":
        s = load_protocol("online-retail", DATASETS, validation=validation)
        return Split(name, s.train, _times_of(s), s.relevant)
    if name == "ml-100k-lastout":
        return _lastout(name, _movielens_events(), validation)
    if name == "online-retail-lastout":
        return _lastout(name, _retail_events(), validation)
    raise ValueError(f"unknown protocol {name!r}")


def order_blind() -> dict:
    """The engine's order-blind models and implicit's ALS, by name (factories)."""
    from recommendations.engine import RP3beta, blend_ranker, default_recommender, user_based_ranker
    from recommendations.engine.evaluation import ImplicitPeer

    return {
        "default (PureSVD)": lambda: default_recommender(n_threads=N_THREADS),
        "user_based_ranker": lambda: user_based_ranker(n_threads=N_THREADS),
        "rp3beta": lambda: RP3beta(alpha=0.5, beta=0.5, k=100, binary=False, value_transform="log1p"),
        "default + rp3beta": lambda: blend_ranker(("default", "rp3beta"), n_threads=N_THREADS),
        "implicit ALS (64)": lambda: ImplicitPeer("als", {"factors": 64}, n_threads=N_THREADS),
    }


ENGINE_ORDER_BLIND = ("default (PureSVD)", "user_based_ranker", "rp3beta", "default + rp3beta")


def _evaluate(model, split: Split, *, timestamps: bool) -> dict:
    from recommendations.engine import topn_metrics

    t0 = time.perf_counter()
    if timestamps:
        model.fit(split.train, timestamps=split.timestamps)
    else:
        model.fit(split.train)
    t1 = time.perf_counter()
    items, _ = model.recommend(split.users, n=K, exclude_seen=True)
    t2 = time.perf_counter()
    out = topn_metrics(items, split.relevant, split.users, split.train, k=K)
    out.update(fit_seconds=t1 - t0, recommend_seconds=t2 - t1)
    return {key: round(v, 4) if isinstance(v, float) else v for key, v in out.items()}


def _sasrec(**overrides):
    from recommendations.engine import SASREC_PARAMS as defaults
    from recommendations.engine import SASRec

    return SASRec(**{**defaults, **SASREC_PARAMS, **overrides, "n_threads": N_THREADS})


def compare(quick: bool = False, protocols=PROTOCOLS, params: dict | None = None) -> dict:
    from recommendations.engine import SASREC_PARAMS as defaults

    out = {"sasrec_params": {**defaults, **SASREC_PARAMS, **(params or {})}, "protocols": {}}
    for name in protocols:
        split = load_split(name)
        rows = {}
        rows["sasrec"] = _evaluate(_sasrec(**(params or {})), split, timestamps=True)
        print(name, "sasrec", rows["sasrec"]["ndcg@10"], rows["sasrec"]["fit_seconds"], flush=True)
        for label, make in order_blind().items():
            if quick and label not in ("default (PureSVD)",):
                continue
            rows[label] = _evaluate(make(), split, timestamps=False)
            print(name, label, rows[label]["ndcg@10"], flush=True)
        blind = {k: v[f"ndcg@{K}"] for k, v in rows.items() if k in ENGINE_ORDER_BLIND}
        best = max(blind, key=blind.get)
        out["protocols"][name] = {
            "n_users": int(split.train.shape[0]),
            "n_items": int(split.train.shape[1]),
            "n_train": int(split.train.nnz),
            "n_users_scored": len(split.users),
            "results": rows,
            "best_order_blind": best,
            "sasrec_over_best_order_blind": round(rows["sasrec"][f"ndcg@{K}"] / blind[best], 4),
        }
    ratios = {n: p["sasrec_over_best_order_blind"] for n, p in out["protocols"].items()}
    out["target"] = {
        "ratios": ratios,
        "met (>= 1.10 on at least one temporal protocol)": any(r >= 1.10 for r in ratios.values()),
    }
    return out


class _Watch:
    """A Keras callback: validation NDCG@10 of the network every ``every`` epochs."""

    def __new__(cls, *args, **kwargs):
        import keras

        from recommendations.engine.sequence import last_states

        class Watch(keras.callbacks.Callback):
            def __init__(self, split: Split, history: np.ndarray, every: int):
                super().__init__()
                self.split, self.history, self.every, self.curve = split, history, every, {}

            def on_epoch_end(self, epoch, logs=None):
                if (epoch + 1) % self.every:
                    return
                from recommendations.engine import topn_metrics
                from recommendations.engine._base import topn_from_scores

                states, table = last_states(self.model, self.history[self.split.users])
                scores = states @ table[1:].T
                seen = self.split.train[self.split.users]
                scores[np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr)), seen.indices] = -np.inf
                items, _ = topn_from_scores(scores, K)
                m = topn_metrics(items, self.split.relevant, self.split.users, self.split.train, k=K)
                self.curve[epoch + 1] = round(m[f"ndcg@{K}"], 4)

        return Watch(*args, **kwargs)


def tune(quick: bool = False, protocols=PROTOCOLS, grid=None, max_epochs: int = 60, every: int = 5) -> dict:
    """SASRec settings on the validation splits: NDCG@10 after every ``every`` epochs of one fit."""
    from recommendations.engine._base import check_user_items
    from recommendations.engine.sequence import ordered_histories, right_aligned

    grid = grid or [
        {"factors": 64, "blocks": 2, "dropout": 0.2},
        {"factors": 32, "blocks": 2, "dropout": 0.2},
        {"factors": 64, "blocks": 1, "dropout": 0.2},
        {"factors": 64, "blocks": 2, "dropout": 0.5},
    ]
    out = {}
    for name in protocols:
        split = load_split(name, validation=True)
        blind = {}
        for label, make in order_blind().items():
            if quick and label != "default (PureSVD)":
                continue
            blind[label] = _evaluate(make(), split, timestamps=False)[f"ndcg@{K}"]
        print(name, "order-blind (validation)", blind, flush=True)
        rows = []
        for params in grid:
            p = {**_sasrec(**params).get_params(), "epochs": max_epochs}
            p.pop("n_threads")
            r = check_user_items(split.train)
            history = right_aligned(*ordered_histories(r, split.timestamps), p["max_len"])
            watch = _Watch(split, history, every)
            t0 = time.perf_counter()
            _sasrec(**p).fit(split.train, timestamps=split.timestamps, callbacks=[watch])
            best_epochs = max(watch.curve, key=watch.curve.get)
            rows.append(
                {
                    "params": params,
                    "curve": watch.curve,
                    "best_epochs": best_epochs,
                    "best": watch.curve[best_epochs],
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            )
            print(name, params, watch.curve, flush=True)
        out[name] = {"order_blind_validation_ndcg@10": blind, "sasrec": rows}
    return out


def run(quick: bool = False) -> dict:
    if not (DATASETS / "ml-100k" / "u.data").exists():
        return {"datasets": f"not found at {DATASETS}; skipped"}
    return compare(quick=quick)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--params", default="{}", help="JSON of SASRec parameters (tune: a list of them)")
    parser.add_argument("--max-epochs", type=int, default=60)
    args = parser.parse_args()
    protocols = [p for p in args.protocols.split(",") if p]
    params = json.loads(args.params)
    RESULTS.mkdir(exist_ok=True)
    if args.tune:
        figures = tune(args.quick, protocols, grid=params or None, max_epochs=args.max_epochs)
        name = "sequence-tune"
    else:
        figures = compare(args.quick, protocols, params=params)
        name = "sequence"
    suffix = "" if set(protocols) == set(PROTOCOLS) else "-" + "-".join(protocols)
    (RESULTS / f"{name}{suffix}.json").write_text(json.dumps(figures, indent=2, default=str))
    print(json.dumps(figures, indent=2, default=str)[:6000])
    return 0


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    sys.exit(main())
