"""
The verbs that change the recommender's state: compute a run's suggestions, record impressions.

`recommendations_compute` computes the pipeline's "recommendations" step (recommendations/steps.py, after segments):

1. read the events of the window in bulk and map customer and item ids to matrix rows and
   columns through a vocabulary (the ids sorted, looked up with `searchsorted`);
2. build one implicit matrix over ALL items (products, activities and posts together), with the
   `EVENT_WEIGHTS` feedback weights and the recommender's time decay, plus explicit ratings as
   they are. One model over every kind lets a taste shown on community posts inform product
   suggestions and keeps the small kinds (a dozen activities) usable; each kind's list is then
   the same model with the other kinds filtered out;
3. hold out each customer's latest new items, fit on the rest and record precision, recall,
   NDCG and coverage at 10 per kind (and the popularity baseline's, for comparison);
4. fit the default algorithm (PureSVD, see docs/engine.md) on everything and compute the top-N
   of every kind for every customer with history, in chunks of customers, with an explanation
   for each pair; items shown recently (Impression) are down-weighted;
5. customers without history get what is popular in their clustering segment, or overall;
6. store the top neighbours of every item within its kind (item-item cosine, `ItemKNN`);
7. switch the active run in one transaction, then prune old runs.

Every row carries the run's id and readers only look at the active run, so a run being
written is invisible and a failed run leaves the previous one in service.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import scipy.sparse as sp
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.audit import audit_record
from common.bulk import bulk_insert, read_frame
from pipeline.models import RunStatus
from profiles.models import CONSENT_FIELDS, Customer, Event, Item, ItemKind
from segments.models import Membership, SegmentKind

from . import algorithms
from .engine import (
    EXPLAIN_ITEM,
    EXPLAIN_POPULAR,
    ItemKNN,
    Popularity,
    chunks,
    compact,
    interaction_matrix,
    last_items_holdout,
    pair_matrix,
    pair_values,
    penalise_shown,
    topn_metrics,
)
from .models import (
    Impression,
    PopularItem,
    Reason,
    Recommendation,
    RecommendationsAuditAction,
    RecommenderConfig,
    RecommenderRun,
    SimilarItem,
)

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = tuple(k.value for k in ItemKind)
EVAL_K = 10

#: How "because you … X" reads, by the strongest thing the customer did with X (first wins).
VERBS: tuple[tuple[str, str], ...] = (
    ("purchase", "bought"),
    ("return", "bought"),
    ("post", "posted"),
    ("comment", "commented on"),
    ("like", "liked"),
    ("favorite", "saved"),
    ("rating", "rated"),
    ("share", "shared"),
    ("add_to_cart", "put {} in your basket"),
    ("click", "looked at"),
    ("view", "looked at"),
)  # the item's name goes at "{}", else after the verb
REASON_TEXT = {
    Reason.SIMILAR_USERS: "customers with similar taste bought this",
    Reason.SEGMENT_POPULAR: "popular in your segment",
    Reason.POPULAR: "popular right now",
}


def config_spec(config: RecommenderConfig) -> algorithms.Spec:
    """A configuration as the engine's plain data. PureSVD's parameters start from the shop's
    RECOMMENDER_MODEL_PARAMS (the settings' defaults for the default model), then the configuration's."""
    if config.algorithm == algorithms.ALGORITHMS["blend"].key:
        parts = tuple(
            (config_spec(c.config), float(c.weight)) for c in config.components.select_related("config").order_by("pk")
        )
        return algorithms.Spec("blend", algorithms.validate("blend", config.params), parts, name=config.name)
    params = dict(config.params or {})
    if config.algorithm == "pure_svd":
        params = {**settings.RECOMMENDER_MODEL_PARAMS, **params}
    return algorithms.Spec(config.algorithm, algorithms.validate(config.algorithm, params), name=config.name)


def config_for_run(name: str = "") -> RecommenderConfig | None:
    """The configuration a run serves: the one named, else the default. A missing name is an error
    that names it (a run never silently serves another configuration than the one asked for). A
    database with no configuration at all (one emptied by hand) serves the settings' PureSVD: None."""
    if name:
        try:
            return RecommenderConfig.objects.get(name=name)
        except RecommenderConfig.DoesNotExist:
            known = ", ".join(RecommenderConfig.objects.values_list("name", flat=True)) or "none"
            raise ValueError(f"no recommender configuration named {name!r} (configurations: {known})") from None
    config = RecommenderConfig.objects.filter(is_default=True).first()
    if config is None and not RecommenderConfig.objects.exists():
        return None
    if config is None:
        raise ValueError("no recommender configuration is the default; make one the default in the console")
    return config


def config_make_default(config: RecommenderConfig, *, request=None, source: str = "admin") -> bool:
    """Make `config` the default configuration (the one the pipeline serves), in one transaction,
    audited. Returns False when it already was. The next run serves it; the active run stays in
    service until then."""
    with transaction.atomic():
        previous = list(
            RecommenderConfig.objects.select_for_update().filter(is_default=True).values_list("name", flat=True)
        )
        if previous == [config.name]:
            return False
        RecommenderConfig.objects.filter(is_default=True).update(is_default=False, updated_at=timezone.now())
        RecommenderConfig.objects.filter(pk=config.pk).update(is_default=True, updated_at=timezone.now())
        config.is_default = True
        audit_record(
            action=RecommendationsAuditAction.CONFIG_MADE_DEFAULT,
            request=request,
            target=config,
            target_label=config.name[:200],
            changes={"previous default": previous[0] if previous else None},
            source=source,
        )
    return True


def recommender_settings(config: RecommenderConfig | None = None) -> dict:
    """The recommender's configuration: the shop's settings (names and defaults in
    docs/recommendations.md) with the chosen configuration's algorithm, parameters, event weights
    and decay over them. Without a configuration (tools, tests): the settings alone, PureSVD."""
    spec = (
        config_spec(config)
        if config is not None
        else algorithms.Spec("pure_svd", algorithms.validate("pure_svd", settings.RECOMMENDER_MODEL_PARAMS))
    )
    weights = dict(settings.EVENT_WEIGHTS)
    half_life = float(settings.RECOMMENDER_HALF_LIFE_DAYS)
    if config is not None:
        weights.update({k: float(v) for k, v in (config.event_weights or {}).items()})
        if config.half_life_days:
            half_life = float(config.half_life_days)
    return {
        "config_id": config.pk if config is not None else None,
        "config_name": config.name if config is not None else "",
        "spec": spec,
        "weights": weights,
        "half_life_days": half_life,
        "decay_from": settings.RECOMMENDER_DECAY_FROM,
        "window_days": float(settings.RECOMMENDER_WINDOW_DAYS),
        "model_params": _spec_params(spec),
        "top_n": int(settings.RECOMMENDER_TOP_N),
        "similar_n": int(settings.RECOMMENDER_SIMILAR_N),
        "similar_k": int(settings.RECOMMENDER_SIMILAR_K),
        "keep_runs": max(1, int(settings.RECOMMENDER_KEEP_RUNS)),
        "exclude": {k: list(v) for k, v in settings.RECOMMENDER_EXCLUDE_EVENT_TYPES.items()},
        "chunk_customers": max(1, int(settings.RECOMMENDER_CHUNK_CUSTOMERS)),
        "n_threads": settings.RECOMMENDER_N_THREADS,
        "eval_holdout": int(settings.RECOMMENDER_EVAL_HOLDOUT),
        "eval_min_items": int(settings.RECOMMENDER_EVAL_MIN_ITEMS),
        "impression_window_days": float(settings.RECOMMENDER_IMPRESSION_WINDOW_DAYS),
        "impression_penalty": float(settings.RECOMMENDER_IMPRESSION_PENALTY),
        "training_consent": settings.TRAINING_REQUIRES_CONSENT,
    }


def _spec_params(spec: algorithms.Spec) -> dict:
    """Every parameter in effect (defaults included), as the run records them; a blend lists its parts."""
    if spec.components:
        return {
            **algorithms.effective(spec.algorithm, spec.params),
            "components": {
                part.name or f"part {i + 1}": {"algorithm": part.algorithm, "weight": w, "params": _spec_params(part)}
                for i, (part, w) in enumerate(spec.components)
            },
        }
    return algorithms.effective(spec.algorithm, spec.params)


def training_consent_mask(people: pd.DataFrame, rule: str | list | tuple) -> np.ndarray:
    """Which customers may train the recommender. `rule`: "" (everyone), "any" (a customer who
    consented to at least one channel), or channels (e.g. "email,push": consent to one of them)."""
    if not rule:
        return np.ones(len(people), dtype=bool)
    if rule == "any":
        channels = list(CONSENT_FIELDS)
    else:
        channels = [c.strip() for c in (rule.split(",") if isinstance(rule, str) else rule)]
    unknown = [c for c in channels if c not in CONSENT_FIELDS]
    if unknown:
        raise ValueError(
            f"TRAINING_REQUIRES_CONSENT names unknown channel(s) {unknown}; "
            f"use any, or some of {sorted(CONSENT_FIELDS)}"
        )
    return np.logical_or.reduce([people[CONSENT_FIELDS[c]].to_numpy(dtype=bool) for c in channels])


# ---------------------------------------------------------------------------- impressions
def impressions_record(
    *, customer_ids, item_ids, shown_at=None, source: str = "", channel: str | np.ndarray = ""
) -> int:
    """Record that items were shown to customers (campaigns call this after delivering, the shop's
    frontend through the impressions endpoint). `shown_at` is one time or one per row; `channel` is
    the suggestions' channel each list came from (an experiment's variant), one for all or one per row.

    The next run multiplies the score of an item shown to a customer within
    RECOMMENDER_IMPRESSION_WINDOW_DAYS by RECOMMENDER_IMPRESSION_PENALTY per showing, so a
    customer who ignored a suggestion sees something else next time. Arrays of equal length.
    """
    frame = pd.DataFrame(
        {"customer_id": np.asarray(customer_ids, dtype=np.int64), "item_id": np.asarray(item_ids, dtype=np.int64)}
    )
    if frame.empty:
        return 0
    if shown_at is None or isinstance(shown_at, datetime):
        frame["shown_at"] = pd.Timestamp(shown_at or timezone.now())
    else:
        frame["shown_at"] = pd.to_datetime(np.asarray(shown_at), utc=True)
    frame["source"] = source[:60]
    frame["channel"] = channel if isinstance(channel, str) else np.asarray(channel, dtype=object)
    with transaction.atomic():
        return bulk_insert(Impression, frame)


# ---------------------------------------------------------------------------- the data
@dataclass
class Interactions:
    """The run's vocabulary and matrices. Rows are customers (sorted ids), columns items."""

    customer_ids: np.ndarray  # (n_users,)
    item_ids: np.ndarray  # (n_items,)
    item_kind: np.ndarray  # (n_items,) str
    item_active: np.ndarray  # (n_items,) bool
    item_title: np.ndarray  # (n_items,) object
    user_items: sp.csr_matrix  # decayed weights + ratings
    times: sp.csr_matrix  # the latest positive event of each pair of user_items, Unix seconds (orders histories)
    recent: sp.csr_matrix  # the same decayed from the shop's latest event ("popular right now")
    exclude: sp.csr_matrix  # 1 where the customer did something that rules the item out
    verb: sp.csr_matrix  # 1 + index into VERBS of the strongest event of the pair
    shown: sp.csr_matrix  # recent impressions per pair
    events: pd.DataFrame  # u, i, t, positive (for the holdout)
    n_events: int
    now: pd.Timestamp
    n_untrained: int = 0  # customers left out of training for want of consent

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.customer_ids), len(self.item_ids)

    def kind_filter(self, kind: str) -> np.ndarray:
        """Columns never to suggest for `kind`: the other kinds and inactive items."""
        return np.flatnonzero((self.item_kind != kind) | ~self.item_active)


def _feedback(u, i, etype, value, t, cfg: dict, *, decay_from: str, shape) -> sp.csr_matrix:
    """The engine's interaction matrix with the recommender's weights and half-life."""
    return interaction_matrix(
        u,
        i,
        etype,
        value,
        t,
        weights=cfg["weights"],
        half_life_days=cfg["half_life_days"],
        decay_from=decay_from,
        n_users=shape[0],
        n_items=shape[1],
    )


def _pair_times(u, i, t, positive, shape) -> sp.csr_matrix:
    """The latest positive event of each (customer, item) pair, in Unix seconds: what orders a customer's
    history for the models that read it in order (`uses_timestamps`, the sequence model)."""
    secs = np.asarray(t, dtype="datetime64[ns]").astype("datetime64[s]").astype(np.int64).astype(np.float64)
    return pair_matrix(u[positive], i[positive], secs[positive], n_users=shape[0], n_items=shape[1], agg="max")


def _fit(model, user_items: sp.csr_matrix, times: sp.csr_matrix):
    """Fit the configuration's estimator; one that orders histories also gets each pair's latest time."""
    if getattr(model, "uses_timestamps", False):
        return model.fit(user_items, timestamps=times)
    return model.fit(user_items)


def load_interactions(cfg: dict, *, now: datetime | None = None) -> Interactions:
    """Read customers, items, events (of the window) and recent impressions into matrices."""
    now_ts = pd.Timestamp(now or timezone.now())
    people = read_frame(Customer.objects.order_by("id"), ["id", *CONSENT_FIELDS.values()])
    customers = people["id"].to_numpy(dtype=np.int64)
    trainable = training_consent_mask(people, cfg["training_consent"])
    items = read_frame(Item.objects.order_by("id"), ["id", "kind", "active", "title"])
    item_ids = items["id"].to_numpy(dtype=np.int64)
    since = now_ts - pd.Timedelta(days=cfg["window_days"])
    events = read_frame(
        Event.objects.filter(item__isnull=False, occurred_at__gte=since).order_by(),
        ["customer_id", "item_id", "type", "value", "occurred_at"],
        parse_dates=("occurred_at",),
    )
    shape = (len(customers), len(item_ids))
    u = np.searchsorted(customers, events["customer_id"].to_numpy(dtype=np.int64))
    i = np.searchsorted(item_ids, events["item_id"].to_numpy(dtype=np.int64))
    etype = events["type"].to_numpy(dtype=object)
    value = events["value"].to_numpy(dtype=np.float64)
    t = events["occurred_at"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    # Customers left out of training (TRAINING_REQUIRES_CONSENT) teach the model nothing and get
    # non-personal lists; their own events still keep what they bought out of those lists.
    everyone = (u, i, etype, value, t)
    u, i, etype, value, t = (a[trainable[u]] for a in everyone) if not trainable.all() else everyone
    user_items = _feedback(u, i, etype, value, t, cfg, decay_from=cfg["decay_from"], shape=shape)
    recent = _feedback(u, i, etype, value, t, cfg, decay_from="latest", shape=shape)

    kind = items["kind"].to_numpy(dtype=object)
    eu, ei, etype_all = everyone[0], everyone[1], everyone[2]
    excluded = np.zeros(len(etype_all), dtype=bool)
    for k, types in cfg["exclude"].items():
        excluded |= (kind[ei] == k) & np.isin(etype_all, list(types))
    exclude = pair_matrix(eu[excluded], ei[excluded], n_users=shape[0], n_items=shape[1])
    verb_code = pd.Series(etype).map({e: len(VERBS) - j for j, (e, _) in enumerate(VERBS)}).fillna(0).to_numpy()
    has_verb = verb_code > 0
    verb = pair_matrix(u[has_verb], i[has_verb], verb_code[has_verb], n_users=shape[0], n_items=shape[1], agg="max")

    shown_since = now_ts - pd.Timedelta(days=cfg["impression_window_days"])
    imp = read_frame(Impression.objects.filter(shown_at__gte=shown_since).order_by(), ["customer_id", "item_id"])
    iu = np.searchsorted(customers, imp["customer_id"].to_numpy(dtype=np.int64))
    ii = np.searchsorted(item_ids, imp["item_id"].to_numpy(dtype=np.int64))
    ok = (iu < len(customers)) & (ii < len(item_ids))
    ok[ok] &= (customers[iu[ok]] == imp["customer_id"].to_numpy()[ok]) & (
        item_ids[ii[ok]] == imp["item_id"].to_numpy()[ok]
    )
    shown = pair_matrix(iu[ok], ii[ok], n_users=shape[0], n_items=shape[1])

    w = pd.Series(etype).map({k: float(v) for k, v in cfg["weights"].items()}).fillna(0.0).to_numpy()
    positive = (w > 0) | ((etype == "rating") & np.isfinite(value))
    return Interactions(
        customer_ids=customers,
        item_ids=item_ids,
        item_kind=kind,
        item_active=items["active"].to_numpy(dtype=bool),
        item_title=items["title"].fillna("").to_numpy(dtype=object),
        user_items=user_items,
        times=_pair_times(u, i, t, positive, shape),
        recent=recent,
        exclude=exclude,
        verb=verb,
        shown=shown,
        events=pd.DataFrame({"u": u, "i": i, "type": etype, "value": value, "t": t, "positive": positive}),
        n_events=len(u),
        now=now_ts,
        n_untrained=int((~trainable).sum()),
    )


# ---------------------------------------------------------------------------- offline metrics
def holdout_split(data: Interactions, cfg: dict) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Leave-last-out (the engine's `last_items_holdout`): each customer's `eval_holdout` most
    recently discovered items are the test, for customers with at least `eval_min_items` distinct
    items. Returns the training matrix (every event of a held-out pair removed) and the relevant matrix.
    """
    train, relevant, _ = _holdout(data, cfg)
    return train, relevant


def _holdout(data: Interactions, cfg: dict) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """`holdout_split`, plus the training pairs' latest times (`Interactions.times` of the kept events)."""
    ev = data.events
    relevant, keep = last_items_holdout(
        ev["u"].to_numpy(),
        ev["i"].to_numpy(),
        ev["t"].to_numpy(),
        ev["positive"].to_numpy(),
        n_holdout=cfg["eval_holdout"],
        min_items=cfg["eval_min_items"],
        n_users=data.shape[0],
        n_items=data.shape[1],
    )
    kept = ev[keep]
    train = _feedback(
        kept["u"].to_numpy(),
        kept["i"].to_numpy(),
        kept["type"].to_numpy(),
        kept["value"].to_numpy(),
        kept["t"].to_numpy(),
        cfg,
        decay_from=cfg["decay_from"],
        shape=data.shape,
    )
    times = _pair_times(
        kept["u"].to_numpy(), kept["i"].to_numpy(), kept["t"].to_numpy(), kept["positive"].to_numpy(), data.shape
    )
    return train, relevant, times


def _model(cfg: dict):
    """The configuration's estimator, unfitted."""
    return algorithms.build(cfg["spec"], n_threads=cfg["n_threads"])


def offline_metrics(data: Interactions, cfg: dict) -> dict:
    """Metrics at 10 per kind on the holdout, for the default model and the popularity baseline."""
    train, relevant, times = _holdout(data, cfg)
    out: dict = {
        "protocol": f"last {cfg['eval_holdout']} new items per customer with >= {cfg['eval_min_items']} items",
        # "default" below is this run's configuration (named here), "popularity" the baseline
        "configuration": cfg["config_name"] or "settings (PureSVD)",
        "customers": int((np.diff(relevant.indptr) > 0).sum()),
        "held_out": int(relevant.nnz),
    }
    if relevant.nnz == 0 or train.nnz == 0:
        return out
    model = _fit(_model(cfg), train, times)
    popular = Popularity(weighting="values").fit(train)
    for kind in KINDS:
        cols = data.item_kind == kind
        rel_k = relevant @ sp.diags(cols.astype(np.float64))
        rel_k.eliminate_zeros()
        users = np.flatnonzero(np.diff(rel_k.indptr) > 0)
        if not len(users):
            continue
        n_kind = max(int((cols & data.item_active).sum()), 1)
        block = data.kind_filter(kind)
        figures = {}
        for name, m in (("default", model), ("popularity", popular)):
            items, _ = m.recommend(users, n=EVAL_K, filter_items=block)
            res = topn_metrics(items, rel_k, users, train, k=EVAL_K)
            # coverage of this kind's catalogue, not of every item
            res[f"coverage@{EVAL_K}"] = float(len(np.unique(items[items >= 0])) / n_kind)
            figures[name] = {key: round(val, 4) if isinstance(val, float) else val for key, val in res.items()}
        out[kind] = figures
    return out


# ---------------------------------------------------------------------------- lists
def _item_reasons(
    data: Interactions,
    users: np.ndarray,
    items: np.ndarray,
    ex_kind: np.ndarray,
    ex_item: np.ndarray,
    ex_count: np.ndarray | None = None,
):
    """Reason codes, reason items and texts for warm suggestions, vectorised. `ex_count`: for
    "customers with similar taste", how many of the customer's neighbours have the item (0: unknown)."""
    by_item = (ex_kind == EXPLAIN_ITEM) & (ex_item >= 0)
    popular = ex_kind == EXPLAIN_POPULAR  # a configuration serving popularity to warm customers
    reason = np.where(
        by_item, Reason.ITEM.value, np.where(popular, Reason.POPULAR.value, Reason.SIMILAR_USERS.value)
    ).astype(object)
    src = np.where(by_item, ex_item, -1)
    verb_code = np.zeros(items.shape, dtype=np.int64)
    if by_item.any():
        rows = np.broadcast_to(users[:, None], items.shape)
        verb_code[by_item] = pair_values(data.verb, rows[by_item], src[by_item]).astype(np.int64)
    templates = [v if "{}" in v else v + " {}" for v in ["interacted with"] + [v for _, v in VERBS][::-1]]
    before = np.array([t.split("{}")[0] for t in templates], dtype=object)
    after = np.array([t.split("{}")[1] for t in templates], dtype=object)
    text = np.full(items.shape, REASON_TEXT[Reason.SIMILAR_USERS], dtype=object)
    text[popular] = REASON_TEXT[Reason.POPULAR]
    if ex_count is not None:
        counted = ~by_item & ~popular & (ex_count > 0)
        if counted.any():
            n = ex_count[counted]
            text[counted] = np.where(
                n == 1,
                "a customer with similar taste bought this",
                pd.Series(n).map("{:,} customers with similar taste bought this".format).to_numpy(dtype=object),
            )
    if by_item.any():
        # an item of the customer's own suggested again (viewed, not bought) is its own reason: "… it"
        names = data.item_title[src[by_item]]  # a copy (fancy indexing), object dtype
        names[src[by_item] == items[by_item]] = "it"
        codes = verb_code[by_item]
        text[by_item] = "because you " + before[codes] + names + after[codes]
    return reason, src, text


def _rows_frame(run_id: int, data: Interactions, users, kind, items, scores, reason, src, text) -> pd.DataFrame:
    valid = items >= 0
    rank = np.cumsum(valid, axis=1)
    users_rep = np.broadcast_to(np.asarray(users)[:, None], items.shape)
    src_v = src[valid]
    reason_item = pd.array(np.where(src_v >= 0, data.item_ids[np.maximum(src_v, 0)], 0), dtype="Int64")
    reason_item[src_v < 0] = pd.NA
    return pd.DataFrame(
        {
            "run_id": run_id,
            "customer_id": data.customer_ids[users_rep[valid]],
            "item_id": data.item_ids[items[valid]],
            "kind": kind,
            "rank": rank[valid].astype(np.int64),
            "score": np.round(scores[valid].astype(np.float64), 6),
            "reason": reason[valid],
            "reason_item_id": reason_item,
            "reason_text": pd.Series(text[valid], dtype=object).str.slice(0, 300).to_numpy(dtype=object),
        }
    )


def fallback_lists(popular: Popularity, data: Interactions, n: int) -> dict[str, np.ndarray]:
    """Per kind, the overall popular items (2 × n of them) that complete a list a model could not fill;
    computed once per run, not per chunk of customers."""
    out = {}
    for kind in KINDS:
        items, _ = popular.recommend_for_group(np.arange(data.shape[0]), n=2 * n, filter_items=data.kind_filter(kind))
        out[kind] = items[items >= 0]
    return out


def _fill_with_popular(pop: np.ndarray, data: Interactions, users, n: int, lists: tuple):
    """The slots a model left empty (it had no evidence for more items: a customer with one item, a
    neighbourhood that bought little) filled from the kind's popular items `pop`, after the model's own
    items and said to be popular; never an item already listed or one the customer may not be suggested."""
    items = lists[0]
    short = (items >= 0).sum(axis=1) < n
    if not short.any() or not len(pop):
        return lists
    rows, mine = users[short], items[short]
    cand = np.broadcast_to(pop, (len(rows), len(pop)))
    taken = (cand[:, :, None] == mine[:, None, :]).any(axis=2)
    excluded = pair_values(data.exclude, np.broadcast_to(rows[:, None], cand.shape), cand) > 0
    filler = (
        np.zeros(cand.shape),
        np.full(cand.shape, Reason.POPULAR.value, dtype=object),
        np.full(cand.shape, -1, dtype=np.int64),
        np.full(cand.shape, REASON_TEXT[Reason.POPULAR], dtype=object),
    )
    joined = [np.concatenate([part[short], extra], axis=1) for part, extra in zip(lists[1:], filler, strict=True)]
    drop = np.concatenate([np.zeros(mine.shape, dtype=bool), taken | excluded], axis=1)
    all_items = np.concatenate([mine, cand], axis=1)
    scores, reason, src, text = joined
    done = compact(all_items, scores, drop, n=n, aligned=(reason, src, text))
    out = [part.copy() for part in lists]
    for k, part in enumerate(done):
        out[k][short] = part
    return tuple(out)


def warm_lists(model, data: Interactions, users: np.ndarray, kind: str, cfg: dict, fallback: np.ndarray | None = None):
    """Top-N of `kind` for customers with history: (items, scores, reason, reason item, text); slots
    the model could not fill are completed from `fallback` (the kind's popular items, `fallback_lists`)."""
    n = cfg["top_n"]
    has_shown = data.shown.nnz > 0
    n_cand = 2 * n if has_shown else n
    items, scores = model.recommend(users, n=n_cand, filter_items=data.kind_filter(kind), user_items=data.exclude)
    if has_shown:
        items, scores = penalise_shown(users, items, scores, data.shown, penalty=cfg["impression_penalty"], n=n)
    # A score of exactly 0 is no evidence at all (no neighbour has the item, no similar item): such
    # fillers are left out rather than shown with a reason that would not be true.
    items, scores = compact(items, scores, scores == 0, n=n)
    ex = model.explain(np.broadcast_to(users[:, None], items.shape), np.maximum(items, 0))
    reason, src, text = _item_reasons(data, users, items, ex.kind, ex.item, ex.count)
    if fallback is not None:
        items, scores, reason, src, text = _fill_with_popular(
            fallback, data, users, n, (items, scores, reason, src, text)
        )
    return items, scores, reason, src, text


def popular_lists(popular: Popularity, data: Interactions, segments: pd.DataFrame, kind: str, cfg: dict):
    """Per segment (and overall, segment None): items, scores and reasons of the popular list."""
    n = cfg["top_n"]
    block = data.kind_filter(kind)
    out = {}
    for seg_id, members in segments.groupby("segment_id")["u"]:
        items, scores = popular.recommend_for_group(members.to_numpy(), n=n, filter_items=block)
        out[int(seg_id)] = (items, scores, np.where(scores > 0, Reason.SEGMENT_POPULAR.value, Reason.POPULAR.value))
    items, scores = popular.recommend_for_group(np.arange(data.shape[0]), n=n, filter_items=block)
    out[None] = (items, scores, np.full(n, Reason.POPULAR.value, dtype=object))
    return out


def similar_rows(run_id: int, data: Interactions, cfg: dict) -> pd.DataFrame:
    """Top neighbours of every item within its kind, inactive neighbours left out."""
    frames = []
    n = cfg["similar_n"]
    for kind in KINDS:
        cols = np.flatnonzero(data.item_kind == kind)
        if len(cols) < 2:
            continue
        knn = ItemKNN(k=max(cfg["similar_k"], n + 10), n_threads=cfg["n_threads"]).fit(data.user_items[:, cols])
        active = data.item_active[cols]
        for sl in chunks(len(cols), 2000):
            q = np.arange(sl.start, sl.stop)
            idx, sc = knn.similar_items(q, n=n + 10)
            drop = (idx < 0) | ~active[np.maximum(idx, 0)] | ~np.isfinite(sc)
            idx, sc = compact(idx, sc, drop, n=n)
            valid = idx >= 0
            frames.append(
                pd.DataFrame(
                    {
                        "run_id": run_id,
                        "item_id": data.item_ids[cols[np.broadcast_to(q[:, None], idx.shape)[valid]]],
                        "similar_id": data.item_ids[cols[idx[valid]]],
                        "rank": np.cumsum(valid, axis=1)[valid].astype(np.int64),
                        "score": np.round(sc[valid], 6),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _cluster_memberships(data: Interactions) -> pd.DataFrame:
    members = read_frame(
        Membership.objects.filter(segment__kind=SegmentKind.CLUSTER, segment__active=True).order_by(),
        ["segment_id", "customer_id"],
    )
    cid = members["customer_id"].to_numpy(dtype=np.int64)
    u = np.searchsorted(data.customer_ids, cid)
    ok = u < len(data.customer_ids)
    ok[ok] &= data.customer_ids[u[ok]] == cid[ok]
    # one clustering segment per customer; keep the first if a rerun is racing
    return pd.DataFrame({"segment_id": members["segment_id"].to_numpy()[ok], "u": u[ok]}).drop_duplicates("u")


# ---------------------------------------------------------------------------- the step
def _write(model_cls, frame: pd.DataFrame) -> int:
    with transaction.atomic():
        return bulk_insert(model_cls, frame)


def _analyze() -> None:
    """After a bulk COPY PostgreSQL's statistics are stale and the API's lookup may become a
    sequential scan; refresh them before the run goes into service."""
    if connection.vendor != "postgresql":
        return
    tables = ", ".join(m._meta.db_table for m in (Recommendation, SimilarItem, PopularItem, RecommenderRun))
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {tables}")


def _discard(run: RecommenderRun) -> None:
    for model_cls in (Recommendation, SimilarItem, PopularItem):
        model_cls.objects.filter(run=run).delete()


def recommender_channel_close(channel: str) -> int:
    """Take a side channel out of service: its runs and their rows are deleted (an experiment that
    stopped). The shop's own channel cannot be closed. Returns the number of runs deleted."""
    if not channel:
        raise ValueError('the shop\'s own suggestions (channel "") cannot be closed')
    runs = list(RecommenderRun.objects.filter(channel=channel).values_list("pk", flat=True))
    for model_cls in (Recommendation, SimilarItem, PopularItem):
        model_cls.objects.filter(run_id__in=runs).delete()
    RecommenderRun.objects.filter(pk__in=runs).delete()
    return len(runs)


def recommender_run_abandon(*, step) -> int:
    """The pipeline found `step`'s worker dead: its unfinished runs are failed and their rows discarded
    (the active run, another one, stays in service)."""
    runs = list(RecommenderRun.objects.filter(step=step, status=RunStatus.RUNNING, is_active=False))
    for run in runs:
        RecommenderRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, error="Abandoned: the worker running it stopped.", finished_at=timezone.now()
        )
        _discard(run)
    return len(runs)


class _Laps:
    """The durations of a run's phases (seconds, by phase name, then "total")."""

    def __init__(self):
        self.started = self.mark = time.monotonic()
        self.durations: dict[str, float] = {}

    def lap(self, name: str) -> None:
        self.durations[name] = round(time.monotonic() - self.mark, 3)
        self.mark = time.monotonic()

    def total(self) -> float:
        return round(time.monotonic() - self.started, 3)


def _run_create(cfg: dict, *, step, now: datetime | None, channel: str = "") -> RecommenderRun:
    return RecommenderRun.objects.create(
        step=step,
        channel=channel,
        algorithm=cfg["spec"].algorithm,
        config_id=cfg["config_id"],
        started_at=now or timezone.now(),
        params={
            "configuration": cfg["config_name"],
            "algorithm": cfg["spec"].algorithm,
            "model": cfg["model_params"],
            "half_life_days": cfg["half_life_days"],
            "decay_from": cfg["decay_from"],
            "weights": cfg["weights"],
            "window_days": cfg["window_days"],
            "exclude": cfg["exclude"],
            "top_n": cfg["top_n"],
            "similar": {"algorithm": "item_knn_cosine", "k": cfg["similar_k"], "n": cfg["similar_n"]},
            "impressions": {"window_days": cfg["impression_window_days"], "penalty": cfg["impression_penalty"]},
            "holdout": {"last_new_items": cfg["eval_holdout"], "min_items": cfg["eval_min_items"]},
        },
    )


def _sizes(data: Interactions, warm: np.ndarray, cold: np.ndarray) -> dict:
    n_users, n_items = data.shape
    return {
        "customers": n_users,
        "items": n_items,
        "events": data.n_events,
        "interactions": int(data.user_items.nnz),
        "customers_with_history": len(warm),
        "customers_cold": len(cold),
        "items_per_kind": {k: int((data.item_kind == k).sum()) for k in KINDS},
        "inactive_items": int((~data.item_active).sum()),
        "recent_impressions": int(data.shown.nnz),
        "customers_not_trained_no_consent": data.n_untrained,
    }


def _write_warm(
    run: RecommenderRun, data: Interactions, model, popular: Popularity, warm: np.ndarray, cfg: dict, progress
) -> int:
    """Phase "recommend": the lists of the customers with history, chunk by chunk."""
    written = 0
    fallback = fallback_lists(popular, data, cfg["top_n"])
    n_chunks = max(1, -(-len(warm) // cfg["chunk_customers"]))
    for c, sl in enumerate(chunks(len(warm), cfg["chunk_customers"])):
        users = warm[sl]
        frames = [
            _rows_frame(run.pk, data, users, kind, *warm_lists(model, data, users, kind, cfg, fallback[kind]))
            for kind in KINDS
        ]
        written += _write(Recommendation, pd.concat(frames, ignore_index=True))
        progress(
            0.3 + 0.5 * (c + 1) / n_chunks,
            f"suggestions for {min(sl.stop, len(warm)):,} of {len(warm):,} customers with history",
        )
    return written


def _cold_lists(lists: dict, data: Interactions, cold: np.ndarray, cold_seg: np.ndarray):
    """Each customer without history gets their segment's popular list (or the overall one), less
    what they may not be suggested again: (items, scores, reason, text), shape (len(cold), top_n)."""
    keys = [k for k in lists if k is not None]
    table_items = np.stack([lists[k][0] for k in keys] + [lists[None][0]])
    table_scores = np.stack([lists[k][1] for k in keys] + [lists[None][1]])
    table_reason = np.stack([lists[k][2] for k in keys] + [lists[None][2]]).astype(object)
    row_of = {k: j for j, k in enumerate(keys)}
    rows = pd.Series(cold_seg).map(row_of).fillna(len(keys)).to_numpy(dtype=np.int64)
    items, scores, reason = table_items[rows], table_scores[rows], table_reason[rows]
    # a customer without positive history may still have, say, a zero-weight purchase
    excluded = pair_values(data.exclude, cold[:, None], np.maximum(items, 0)) > 0
    items, scores, reason = compact(items, scores, excluded, aligned=(reason,))
    texts = {r.value: t for r, t in REASON_TEXT.items()}
    text = pd.Series(reason.ravel()).map(texts).to_numpy(dtype=object).reshape(reason.shape)
    return items, scores, reason, text


def _write_cold_and_popular(
    run: RecommenderRun, data: Interactions, popular: Popularity, cold: np.ndarray, cfg: dict
) -> int:
    """Phase "cold_start": the popular lists (per clustering segment and overall) and the lists of
    the customers without history; returns how many suggestions were written."""
    segments = _cluster_memberships(data)
    seg_of_user = pd.Series(segments["segment_id"].to_numpy(), index=segments["u"].to_numpy())
    cold_seg = seg_of_user.reindex(cold).to_numpy()  # NaN: in no clustering segment
    popular_frames, cold_frames = [], []
    for kind in KINDS:
        lists = popular_lists(popular, data, segments, kind, cfg)
        for seg, (items, scores, _reason) in lists.items():
            ok = items >= 0
            popular_frames.append(
                pd.DataFrame(
                    {
                        "run_id": run.pk,
                        "segment_id": pd.array([seg] * int(ok.sum()), dtype="Int64"),
                        "kind": kind,
                        "item_id": data.item_ids[items[ok]],
                        "rank": np.arange(1, int(ok.sum()) + 1),
                        "score": np.round(scores[ok], 6),
                    }
                )
            )
        if len(cold):
            items, scores, reason, text = _cold_lists(lists, data, cold, cold_seg)
            no_item = np.full(items.shape, -1)
            cold_frames.append(_rows_frame(run.pk, data, cold, kind, items, scores, reason, no_item, text))
    written = 0
    for start in range(0, len(cold_frames), 3):
        written += _write(Recommendation, pd.concat(cold_frames[start : start + 3], ignore_index=True))
    _write(PopularItem, pd.concat(popular_frames, ignore_index=True))
    return written


def _run_switch(run: RecommenderRun, *, sizes: dict, metrics: dict, laps: _Laps) -> None:
    """Put the run in service in one transaction, unless a newer run finished first (then it is stale)."""
    headline = metrics.get("product", {}).get("default", {})
    with transaction.atomic():
        current = list(RecommenderRun.objects.select_for_update().filter(is_active=True, channel=run.channel))
        newer = RecommenderRun.objects.filter(
            status=RunStatus.SUCCEEDED, channel=run.channel, started_at__gt=run.started_at
        ).exists()
        run.sizes, run.metrics = sizes, metrics
        run.n_customers, run.n_recommendations = sizes["customers"], sizes["recommendations"]
        run.ndcg_at_10 = headline.get(f"ndcg@{EVAL_K}")
        run.precision_at_10 = headline.get(f"precision@{EVAL_K}")
        run.recall_at_10 = headline.get(f"recall@{EVAL_K}")
        run.coverage = headline.get(f"coverage@{EVAL_K}")
        run.finished_at = timezone.now()
        if newer:
            run.status = RunStatus.STALE
            run.error = "A newer run finished first; this one was not put in service."
        else:
            RecommenderRun.objects.filter(pk__in=[r.pk for r in current]).update(is_active=False)
            run.status, run.is_active, run.activated_at = RunStatus.SUCCEEDED, True, timezone.now()
        laps.durations["total"] = laps.total()
        run.durations, run.duration_s = laps.durations, laps.durations["total"]
        run.save()
    if run.status == RunStatus.STALE:
        _discard(run)


def _run_fail(run: RecommenderRun, exc: Exception, laps: _Laps) -> None:
    run.status = RunStatus.FAILED
    run.error = f"{type(exc).__name__}: {exc}"[:5000]
    run.finished_at = timezone.now()
    run.duration_s = laps.total()
    run.durations = laps.durations
    run.save()
    try:
        _discard(run)
    except Exception:  # the original error matters more
        log.exception("could not discard the rows of failed run %s", run.pk)


def recommendations_compute(
    *,
    step=None,
    progress: Callable[[float, str], None] | None = None,
    now: datetime | None = None,
    config: str = "",
    channel: str = "",
    customer_ids=None,
) -> dict:
    """The pipeline's "recommendations" step (see the module docstring): serves the configuration
    named `config`, else the default one. Returns the figures it recorded.

    A side `channel` (an experiment's variant) gets its own run, switched in on that channel only;
    `customer_ids` then limits the lists written to those customers (the model still learns from
    everyone), and similar items are left to the shop's own channel.
    """
    progress = progress or (lambda fraction, message="": None)
    cfg = recommender_settings(config_for_run(config))
    run = _run_create(cfg, step=step, now=now, channel=channel)
    laps = _Laps()
    try:
        progress(0.02, "reading events")
        data = load_interactions(cfg, now=now)
        n_users, n_items = data.shape
        laps.lap("read")
        warm = np.flatnonzero(np.diff(data.user_items.indptr) > 0)
        cold = np.flatnonzero(np.diff(data.user_items.indptr) == 0)
        if customer_ids is not None:
            chosen = np.isin(data.customer_ids, np.asarray(customer_ids, dtype=np.int64))
            warm, cold = warm[chosen[warm]], cold[chosen[cold]]
        sizes = _sizes(data, warm, cold)
        progress(0.12, f"{data.n_events:,} events, {n_users:,} customers × {n_items:,} items; offline evaluation")

        metrics = offline_metrics(data, cfg) if data.user_items.nnz else {}
        laps.lap("evaluate")
        progress(0.3, "fitting the model")
        model = _fit(_model(cfg), data.user_items, data.times) if len(warm) else None
        popular = Popularity(weighting="values").fit(data.recent)
        laps.lap("fit")
        if model is not None and hasattr(model, "updates_"):  # how much of its budget a sequence model used
            sizes["training"] = {
                "windows": int(model.windows_),
                "windows_trained": int(model.windows_trained_),
                "epochs_run": int(model.epochs_run_),
                "updates": int(model.updates_),
            }

        written = _write_warm(run, data, model, popular, warm, cfg, progress)
        laps.lap("recommend")
        progress(0.82, f"popular lists and {len(cold):,} customers without history")
        written += _write_cold_and_popular(run, data, popular, cold, cfg)
        laps.lap("cold_start")
        progress(0.88, "similar items")
        similar = similar_rows(run.pk, data, cfg) if not channel else ()
        sizes["similar_pairs"] = _write(SimilarItem, similar) if len(similar) else 0
        laps.lap("similar_items")
        sizes["recommendations"] = written

        progress(0.96, "refreshing the planner's statistics")
        _analyze()
        progress(0.97, "switching the active run")
        _run_switch(run, sizes=sizes, metrics=metrics, laps=laps)
        pruned = recommender_runs_prune(keep=cfg["keep_runs"])
        progress(1.0, f"{written:,} suggestions for {n_users:,} customers")
        return {
            "run": run.pk,
            "status": run.status,
            "algorithm": run.algorithm,
            "params": run.params,
            "sizes": sizes,
            "durations": laps.durations,
            "pruned_runs": pruned,
            "configuration": cfg["config_name"],
            "channel": channel,
            "metrics": {k: metrics[k]["default"] for k in KINDS if k in metrics},
            **({"_status": "skipped"} if run.status == RunStatus.STALE else {}),
        }
    except Exception as exc:
        _run_fail(run, exc, laps)
        raise


def recommender_runs_prune(*, keep: int) -> int:
    """Delete runs other than the active ones and the `keep` latest successful ones of each channel
    (and their rows)."""
    keep_ids: set[int] = set()
    for channel in RecommenderRun.objects.values_list("channel", flat=True).distinct():
        keep_ids |= set(
            RecommenderRun.objects.filter(status=RunStatus.SUCCEEDED, channel=channel)
            .order_by("-started_at")
            .values_list("pk", flat=True)[:keep]
        )
    keep_ids |= set(RecommenderRun.objects.filter(is_active=True).values_list("pk", flat=True))
    # A run still "running" is either this pipeline's (it holds the lease) or one whose worker died.
    doomed = list(
        RecommenderRun.objects.exclude(pk__in=keep_ids)
        .exclude(status=RunStatus.RUNNING, started_at__gte=timezone.now() - timedelta(hours=6))
        .values_list("pk", flat=True)
    )
    if not doomed:
        return 0
    for model_cls in (Recommendation, SimilarItem, PopularItem):
        model_cls.objects.filter(run_id__in=doomed).delete()
    RecommenderRun.objects.filter(pk__in=doomed).delete()
    return len(doomed)
