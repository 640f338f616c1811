#!/usr/bin/env python
"""Speed and memory of the sequence model, SASRec (issue #18): docs/engine.md, "SASRec: the sequence model".

``run(quick=False) -> dict`` returns JSON-serialisable figures, each case in its own subprocess so its
peak memory (``ru_maxrss``) is its own:

- ``ml-100k``: fit with ``SASREC_PARAMS`` on all 100,000 ratings (histories ordered by their
  timestamps; the issue's target is at most 60 s on this 2-core machine), then the top 20 for
  every user;
- ``100k-users``: a generated shop of 100,000 customers × 20,000 items × 5,000,000 pairs
  (``bench_engine.generated_matrix``, random times), fitted whole with the same defaults (the
  ``max_updates`` bound decides how many epochs and windows: reported), then the top 20 for every
  customer in chunks; ``quick`` shrinks it to 20,000 × 5,000 × 1,000,000.

TensorFlow runs on ``N_THREADS`` threads (intra-op; inter-op 1), as the estimator pins them.
Run as ``python bench/bench_sequence_speed.py [--quick]`` or ``bench/run.py --only sequence_speed``
(results in ``bench/results/sequence_speed.json``; the quality figures are ``eval_sequence.py``'s,
``--only sequence``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

DATASETS = Path(os.environ.get("DATASETS_DIR", REPO.parent / "shared" / "datasets"))
N_THREADS = 2


def _ml100k():
    from recommendations.engine.evaluation import load_movielens_ratings

    df = load_movielens_ratings(DATASETS / "ml-100k" / "u.data")
    shape = (df.user.max(), df.item.max())
    r = sp.csr_matrix((df.rating.values.astype(np.float32), (df.user.values - 1, df.item.values - 1)), shape=shape)
    t = sp.csr_matrix((df.timestamp.values.astype(np.float64), (df.user.values - 1, df.item.values - 1)), shape=shape)
    return r, t


def _generated(n_users, n_items, nnz):
    from bench_engine import generated_matrix

    r = generated_matrix(n_users, n_items, nnz)
    t = r.copy()
    t.data = np.random.default_rng(1).uniform(1.6e9, 1.7e9, r.nnz)
    return r, t


def _case(name: str, quick: bool) -> dict:
    from recommendations.engine import SASREC_PARAMS, SASRec

    t0 = time.perf_counter()
    if name == "ml-100k":
        r, t = _ml100k()
    else:
        r, t = _generated(*((20_000, 5_000, 1_000_000) if quick else (100_000, 20_000, 5_000_000)))
    gen = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = SASRec(**SASREC_PARAMS, n_threads=N_THREADS)
    t0 = time.perf_counter()
    model.fit(r, timestamps=t)
    t1 = time.perf_counter()
    users = np.arange(r.shape[0])
    items, _ = model.recommend(users, n=20)
    t2 = time.perf_counter()
    _, _, why = model.recommend(users[:1000], n=20, return_explanations=True)
    t3 = time.perf_counter()
    out = {
        "case": name,
        "n_users": int(r.shape[0]),
        "n_items": int(r.shape[1]),
        "nnz": int(r.nnz),
        "training_windows": model.windows_,
        "windows_trained": model.windows_trained_,
        "epochs_asked": model.epochs,
        "epochs_run": model.epochs_run_,
        "updates": model.updates_,
        "max_updates": model.max_updates,
        "generate_seconds": gen,
        "fit_seconds": t1 - t0,
        "recommend_top20_all_users_seconds": t2 - t1,
        "recommend_with_explanations_1000_users_seconds": t3 - t2,
        "explained_share": float((why.kind == 1).mean()),
        "all_users_have_20": bool((items >= 0).all()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_before_fit_mb": rss_before / 1024,
        "n_threads": N_THREADS,
    }
    out["seconds_per_update"] = out["fit_seconds"] / max(1, model.updates_)
    return out


def _subprocess(name: str, quick: bool) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", name] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        return {"case": name, "error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    cases = ["100k-users"]
    if (DATASETS / "ml-100k" / "u.data").exists():
        cases.insert(0, "ml-100k")
    return {"speed": [_subprocess(name, quick) for name in cases]}


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    if "--case" in sys.argv:
        print(json.dumps(_case(sys.argv[sys.argv.index("--case") + 1], quick), default=str))
    else:
        print(json.dumps(run(quick), indent=2, default=str))
