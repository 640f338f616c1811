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
from .evaluation import last_items_holdout, topn_metrics
from .factorization import PureSVD
from .graph import RP3beta
from .interactions import build_interactions, decay_weights, interaction_matrix, latest_per_user, pair_matrix
from .knn import ItemKNN, UserKNN
from .popularity import Popularity
from .ranking import compact, pair_values, penalise_shown

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


__all__ = [
    "DEFAULT_HALF_LIFE_DAYS",
    "DEFAULT_PARAMS",
    "EXPLAIN_ITEM",
    "EXPLAIN_NONE",
    "EXPLAIN_POPULAR",
    "EXPLAIN_SIMILAR_USERS",
    "BaseRecommender",
    "Explanations",
    "ItemKNN",
    "Popularity",
    "PureSVD",
    "RP3beta",
    "UserKNN",
    "build_interactions",
    "chunks",
    "compact",
    "decay_weights",
    "default_recommender",
    "interaction_matrix",
    "last_items_holdout",
    "latest_per_user",
    "pair_matrix",
    "pair_values",
    "penalise_shown",
    "topn_metrics",
]
