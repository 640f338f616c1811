"""The recommender engine: pure numerical code on scipy.sparse matrices, no Django.

Users and items are matrix rows and columns; the Django side maps ids through a
vocabulary. See docs/engine.md.
"""

from ._base import (
    EXPLAIN_ITEM,
    EXPLAIN_NONE,
    EXPLAIN_POPULAR,
    EXPLAIN_SIMILAR_USERS,
    BaseRecommender,
    Explanations,
    chunks,
)
from .blend import Blend, normalise_rows
from .evaluation import last_items_holdout, topn_metrics
from .factorization import PureSVD
from .graph import RP3beta
from .interactions import build_interactions, decay_weights, interaction_matrix, latest_per_user, pair_matrix
from .knn import ItemKNN, UserKNN
from .popularity import Popularity
from .ranking import compact, pair_values, penalise_shown
from .sequence import SASRec
from .user_ranking import UserKNNRanker

#: Parameters of the product's default recommender (see docs/engine.md).
DEFAULT_PARAMS = {"factors": 32, "beta": 0.2, "value_transform": "log1p"}
#: Half-life (days) of the time decay applied to implicit events before fitting
#: (``build_interactions(..., half_life_days=DEFAULT_HALF_LIFE_DAYS)``); the Django
#: side reads its own setting and should default to this value.
DEFAULT_HALF_LIFE_DAYS = 14.0


def default_recommender(**overrides) -> PureSVD:
    """The product's default top-N recommender: :class:`PureSVD` with ``DEFAULT_PARAMS``.

    Feed it implicit events built with ``build_interactions(...,
    half_life_days=DEFAULT_HALF_LIFE_DAYS)`` (explicit ratings as they are).

    Parameters
    ----------
    **overrides
        Parameters replacing the defaults (e.g. ``n_threads=1`` in a Celery worker).
    """
    params = dict(DEFAULT_PARAMS)
    params.update(overrides)
    return PureSVD(**params)


#: Defaults of :class:`SASRec` (the sequence model, issue #18), chosen on validation splits of the
#: temporal protocols (``bench/eval_sequence.py --tune``; docs/engine.md).
SASREC_PARAMS = {
    "max_len": 50,
    "factors": 64,
    "blocks": 1,
    "heads": 1,
    "dropout": 0.2,
    "epochs": 20,
    "batch_size": 128,
    "learning_rate": 1e-3,
    "n_negatives": 256,
    "max_updates": 2500,
}
#: Defaults of :func:`user_based_ranker`, chosen on validation splits carved from the
#: training data of both evaluation protocols (``bench/bench_rankers.py --tune``; docs/engine.md).
USER_RANKER_PARAMS = {
    "k": 200,
    "similarity": "pearson",
    "shrinkage": 20.0,
    "exponent": 1.0,
    "beta": 0.2,
    "value_transform": "log1p",
}
#: Defaults of :func:`item_based_ranker` (chosen the same way).
ITEM_RANKER_PARAMS = {"k": 50, "similarity": "cosine", "shrinkage": 50.0, "value_transform": "log1p"}
#: RP3beta as the evaluation compares it (the ``rp3beta`` component of a blend).
RP3BETA_PARAMS = {"alpha": 0.5, "beta": 0.5, "k": 100, "binary": False, "value_transform": "log1p"}
#: Factories a blend can name, and the weights and normalisation chosen for each pair.
BLEND_COMPONENTS = ("user_based", "item_based", "default", "rp3beta")
BLEND_PARAMS = {
    ("user_based", "item_based"): {"weights": (0.8, 0.2), "normalisation": "minmax"},
    ("user_based", "default"): {"weights": (0.7, 0.3), "normalisation": "minmax"},
    ("default", "rp3beta"): {"weights": (0.9, 0.1), "normalisation": "minmax"},
    ("user_based", "rp3beta"): {"weights": (0.9, 0.1), "normalisation": "rank"},
    ("default", "user_based", "rp3beta"): {"weights": (0.2, 0.7, 0.1), "normalisation": "zscore"},
}


def user_based_ranker(**overrides) -> UserKNNRanker:
    """User-based CF for top-N lists: :class:`UserKNNRanker` with ``USER_RANKER_PARAMS``.

    The 200 nearest users by Pearson correlation of their ``log1p`` rows (decayed
    implicit weights, or ratings), shrunk by ``n_uv / (n_uv + 20)``, vote for their
    items; votes are divided by ``popularity^0.2``. Suggestions are explained as
    "customers with similar taste bought this" with the number of neighbours who have
    the item. The mean-centred rating predictor stays :class:`UserKNN`.

    Parameters
    ----------
    **overrides
        Parameters replacing the defaults (e.g. ``n_threads=1`` in a Celery worker).
    """
    params = dict(USER_RANKER_PARAMS)
    params.update(overrides)
    return UserKNNRanker(**params)


def item_based_ranker(**overrides) -> ItemKNN:
    """Item-based CF for top-N lists: :class:`ItemKNN` with ``ITEM_RANKER_PARAMS``.

    Suggestions are explained by the customer's own item that contributed most
    ("because you bought X").
    """
    params = dict(ITEM_RANKER_PARAMS)
    params.update(overrides)
    return ItemKNN(**params)


def blend_ranker(components=("user_based", "item_based"), weights=None, normalisation=None, **overrides) -> Blend:
    """A :class:`Blend` of named factories; by default "user-based + item-based".

    ``blend_ranker(("default", "rp3beta"))`` (the default 0.9 + RP3beta 0.1, min-max) is
    the blend that reaches the default's NDCG@10 on both evaluation protocols
    (docs/engine.md); "rp3beta" is ``RP3beta(**RP3BETA_PARAMS)``.

    Parameters
    ----------
    components : sequence of {"user_based", "item_based", "default", "rp3beta"}
        The factories blended (each called with its own defaults).
    weights, normalisation : optional
        Default: ``BLEND_PARAMS`` for the combination (in this order) when it has an
        entry, else equal weights and ``"minmax"``.
    **overrides
        Passed to every component (e.g. ``n_threads=1``); ``n_threads`` also to the blend.
    """
    factories = {
        "user_based": user_based_ranker,
        "item_based": item_based_ranker,
        "default": default_recommender,
        "rp3beta": lambda **o: RP3beta(**{**RP3BETA_PARAMS, **o}),
    }
    names = tuple(components)
    unknown = [c for c in names if c not in factories]
    if unknown:
        raise ValueError(f"unknown blend components {unknown}; expected some of {BLEND_COMPONENTS}")
    chosen = BLEND_PARAMS.get(names, {})
    if weights is None:
        weights = chosen.get("weights", (1.0,) * len(names))
    if normalisation is None:
        normalisation = chosen.get("normalisation", "minmax")
    return Blend(
        [factories[c](**overrides) for c in names],
        weights=list(weights),
        normalisation=normalisation,
        n_threads=overrides.get("n_threads"),
    )


__all__ = [
    "BLEND_COMPONENTS",
    "BLEND_PARAMS",
    "DEFAULT_HALF_LIFE_DAYS",
    "DEFAULT_PARAMS",
    "EXPLAIN_ITEM",
    "EXPLAIN_NONE",
    "EXPLAIN_POPULAR",
    "EXPLAIN_SIMILAR_USERS",
    "ITEM_RANKER_PARAMS",
    "RP3BETA_PARAMS",
    "SASREC_PARAMS",
    "USER_RANKER_PARAMS",
    "BaseRecommender",
    "Blend",
    "Explanations",
    "ItemKNN",
    "Popularity",
    "PureSVD",
    "RP3beta",
    "SASRec",
    "UserKNN",
    "UserKNNRanker",
    "blend_ranker",
    "build_interactions",
    "chunks",
    "compact",
    "decay_weights",
    "default_recommender",
    "interaction_matrix",
    "item_based_ranker",
    "last_items_holdout",
    "latest_per_user",
    "normalise_rows",
    "pair_matrix",
    "pair_values",
    "penalise_shown",
    "topn_metrics",
    "user_based_ranker",
]
