"""python manage.py evaluate_recommender: offline evaluation on a public dataset or on the shop's own events."""

import json
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from recommendations.engine.evaluation import PROTOCOLS, algorithm_registry, evaluate_topn, format_table, run_protocol

DEFAULT = "default,popularity,item_knn,rp3beta"


class Command(BaseCommand):
    help = (
        "Evaluate recommender algorithms top-N (precision, recall, NDCG, MAP, hit rate, coverage, novelty at k). "
        "--dataset movielens (ML-100K: each user's last 10 ratings), online-retail (split at 2011-11-01), "
        "or db (this database's events: each customer's latest new items held out, as the pipeline step does)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, choices=["movielens", "ml-100k", "online-retail", "db"])
        parser.add_argument(
            "--algorithms",
            default=DEFAULT,
            help=f"Comma-separated, from: {', '.join(algorithm_registry())}. Default {DEFAULT}.",
        )
        parser.add_argument("-k", type=int, default=10)
        parser.add_argument("--datasets-dir", default=None, help="Default: settings.DATASETS_DIR.")
        parser.add_argument("--json", dest="json_path", default=None, help="Also write the figures to this JSON file.")

    def handle(self, *args, dataset, algorithms, k, datasets_dir, json_path, **options):
        registry = algorithm_registry()
        names = [a.strip() for a in algorithms.split(",") if a.strip()]
        unknown = [a for a in names if a not in registry]
        if unknown or not names:
            raise CommandError(
                f"unknown algorithm(s): {', '.join(unknown) or '(none)'}; choose from {', '.join(registry)}"
            )
        started = time.monotonic()
        if dataset == "db":
            result = self._db(names, registry, k)
        else:
            protocol = "ml-100k" if dataset in ("movielens", "ml-100k") else "online-retail"
            assert protocol in PROTOCOLS
            folder = Path(datasets_dir or settings.DATASETS_DIR)
            try:
                result = run_protocol(protocol, folder, algorithms=names, k=k)
            except FileNotFoundError as exc:
                raise CommandError(f"dataset files not found under {folder}: {exc}") from exc
        result["seconds"] = round(time.monotonic() - started, 2)
        self.stdout.write(format_table(result))
        self.stdout.write(f"({result['n_users_scored']:,} users scored, {result['seconds']} s)")
        if json_path:
            Path(json_path).write_text(json.dumps(result, indent=2))
            self.stdout.write(f"Figures written to {json_path}.")

    def _db(self, names, registry, k) -> dict:
        from recommendations.services import holdout_split, load_interactions, recommender_settings

        cfg = recommender_settings()
        data = load_interactions(cfg)
        train, relevant = holdout_split(data, cfg)
        users = np.flatnonzero(np.diff(relevant.indptr) > 0)
        if not len(users):
            raise CommandError("No customer has enough history to hold some out; seed or import events first.")
        results = {name: evaluate_topn(registry[name](), train, relevant, k=k, users=users) for name in names}
        return {
            "protocol": "db (all kinds, latest new items held out)",
            "k": k,
            "half_life_days": cfg["half_life_days"],
            "n_users": int(train.shape[0]),
            "n_items": int(train.shape[1]),
            "n_train": int(train.nnz),
            "n_users_scored": len(users),
            "results": results,
        }
