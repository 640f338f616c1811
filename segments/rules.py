"""
Rule segments: the operator's JSON condition tree, validated, described and compiled to SQL.

A rule is a tree of nodes (the grammar is in docs/rules.md):

    {"all": [r, ...]}   {"any": [r, ...]}   {"not": r}
    {"field": "recency_days", "op": "<=", "value": 30}          profile features
    {"consent": "email"}                                         consent (in_app | email | push)
    {"event": {"type": "purchase", "min_count": 3, "within_days": 90, "category": "Books"}}
    {"segment": 12}                                              members of another segment
    {"affinity": {"category": "Garden", "op": ">=", "value": 0.4}}  predicted chance to buy from a category
    {"top": {"field": "predicted_value", "percent": 10}}         the top 10 % of profiles by a figure

Every leaf compiles to a two-valued boolean on `Customer`: an `EXISTS (...)` subquery over
`Profile`, `Event` or `Membership`, or a test of a non-null `Customer` column. No leaf joins a
table into the outer query, so a rule never duplicates a customer, never needs DISTINCT, and
`NOT` is an exact complement of its child over all customers (SQL's NULL never leaks into the
outer WHERE, where `NOT (NULL)` would silently drop the customers that have no profile).

The whole rule is one `WHERE` on one `SELECT ... FROM profiles_customer`: no Python loop over
customers, no id lists materialised in Python.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count, Exists, F, FloatField, Func, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Substr
from django.db.models.lookups import Exact
from django.utils import timezone

from common.bulk import id_subquery
from profiles.models import (
    CONSENT_FIELDS,
    Customer,
    Event,
    EventType,
    ItemKind,
    Lifecycle,
    PredictionBasis,
    PriceBand,
    Profile,
)

from .models import Membership, Segment, SegmentKind, SegmentSize

MAX_DAYS = 36_500
MAX_COUNT = 1_000_000
MAX_NUMBER = 10**15  # bigger numbers overflow integer columns (and no profile figure comes near)
MAX_SEGMENT_ID = 2**63 - 1

# --- limits on a rule's cost ----------------------------------------------------------------------

# Every event condition is a scan of the events table and every condition a subquery: a rule's
# cost is bounded before it reaches the database (docs/rules.md, "Limits"), by the RULE_MAX_*
# settings (a realistic rule has a handful of conditions).


@dataclass(frozen=True)
class RuleLimits:
    conditions: int
    event_conditions: int
    depth: int
    list_values: int

    @classmethod
    def current(cls) -> RuleLimits:
        """The limits in force (the RULE_MAX_* settings)."""
        return cls(
            int(settings.RULE_MAX_CONDITIONS),
            int(settings.RULE_MAX_EVENT_CONDITIONS),
            int(settings.RULE_MAX_DEPTH),
            int(settings.RULE_MAX_LIST_VALUES),
        )


# --- the vocabulary ------------------------------------------------------------------------------

NUMERIC, CHOICE, TEXT, RFM = "number", "choice", "text", "rfm code"

_COMPARE_OPS = ("=", "!=", "<", "<=", ">", ">=")
_SET_OPS = ("in", "not in")
_NULL_OPS = ("is null", "is not null")


@dataclass(frozen=True)
class FieldSpec:
    kind: str
    ops: tuple[str, ...]
    choices: tuple[str, ...] = ()
    # Text columns store "unknown" as the empty string: it counts as missing, like SQL NULL.
    blank_is_missing: bool = False
    # A probability (0 to 1): a value outside is refused (30 typed for 30 % is a mistake worth naming).
    probability: bool = False


def _numeric() -> FieldSpec:
    return FieldSpec(NUMERIC, _COMPARE_OPS + _SET_OPS + ("between",) + _NULL_OPS)


def _probability() -> FieldSpec:
    return FieldSpec(NUMERIC, _COMPARE_OPS + ("between",) + _NULL_OPS, probability=True)


PROFILE_FIELDS: dict[str, FieldSpec] = {
    **{
        name: _numeric()
        for name in (
            "recency_days",
            "frequency",
            "monetary",
            "avg_order_value",
            "r_score",
            "f_score",
            "m_score",
            "active_days",
            "events_30d",
            "n_events",
            "community_posts",
            "community_comments",
            "community_likes",
            "orders_total",
            "median_price",
        )
    },
    "lifecycle": FieldSpec(CHOICE, ("=", "!=") + _SET_OPS + _NULL_OPS, tuple(c.value for c in Lifecycle)),
    "price_band": FieldSpec(CHOICE, ("=", "!=") + _SET_OPS + _NULL_OPS, tuple(c.value for c in PriceBand), True),
    "top_category": FieldSpec(TEXT, ("=", "!=") + _SET_OPS + _NULL_OPS, blank_is_missing=True),
    "rfm_code": FieldSpec(RFM, ("=", "!=") + _SET_OPS + ("startswith", "matches") + _NULL_OPS),
    # The predictions over the next PREDICTION_HORIZON_DAYS (docs/profiles.md, "Predictions"); NULL
    # (unknown) until the profiles step has predicted for the customer.
    "p_alive": _probability(),
    "churn_risk": _probability(),
    "predicted_orders": _numeric(),
    "predicted_value": _numeric(),
    "prediction_basis": FieldSpec(
        CHOICE, ("=", "!=") + _SET_OPS + _NULL_OPS, tuple(c.value for c in PredictionBasis), True
    ),
}
PREDICTION_FIELDS = ("p_alive", "churn_risk", "predicted_orders", "predicted_value", "prediction_basis")

EVENT_TYPES = tuple(t.value for t in EventType)
ITEM_KINDS = tuple(k.value for k in ItemKind)
EVENT_KEYS = ("type", "min_count", "max_count", "within_days", "category", "item_kind", "item")
AFFINITY_KEYS = ("category", "op", "value")
AFFINITY_OPS = _COMPARE_OPS + ("between",)
TOP_KEYS = ("field", "percent")
# The figures a "top N %" leaf ranks by: every numeric profile field.
TOP_FIELDS = tuple(name for name, spec in PROFILE_FIELDS.items() if spec.kind == NUMERIC)
MAX_CATEGORY_LENGTH = 200
LEAF_KEYS = ("field", "consent", "event", "segment", "affinity", "top")
COMBINATORS = ("all", "any", "not")

_RFM_RE = re.compile(r"^[0-5]{3}$")
_RFM_PREFIX_RE = re.compile(r"^[0-5]{1,3}$")
_RFM_PATTERN_RE = re.compile(r"^[0-5*]{3}$")


class RuleError(Exception):
    """A rule that cannot be used. `errors` lists every problem as {"path", "message"}."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        first = errors[0] if errors else {"path": "", "message": "invalid rule"}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{first['path'] or '(rule)'}: {first['message']}{more}")


# --- validation ----------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) <= MAX_NUMBER
    )


def _storable(value: str) -> bool:
    """Text the database can compare: no NUL (PostgreSQL refuses it), no lone surrogate (no encoding takes it)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _children(node: Any, path: str, limit: int) -> list[tuple[str, Any]]:
    """The child nodes of `node` with their paths, in reading order (at most `limit` of each list)."""
    if not isinstance(node, dict):
        return []
    out: list[tuple[str, Any]] = []
    for key in ("all", "any"):
        if isinstance(node.get(key), list):
            here = _join(path, key)
            out.extend((f"{here}[{i}]", child) for i, child in enumerate(node[key][:limit]))
    if "not" in node:
        out.append((_join(path, "not"), node["not"]))
    return out


def _cost_errors(rule: Any, limits: RuleLimits) -> list[dict]:
    """Too many conditions or event conditions, each named at the first condition past its limit.

    Walks the tree iteratively in reading order (a hostile depth cannot blow Python's stack) and
    stops counting at ten times the limit, so a rule of a million conditions costs no more to refuse.
    """
    ceiling = limits.conditions * 10
    count = events = 0
    over_at = events_over_at = None
    stack: list[tuple[str, Any]] = [("", rule)]
    while stack and count <= ceiling:
        path, node = stack.pop()
        count += 1
        if count == limits.conditions + 1:
            over_at = path
        if isinstance(node, dict) and "event" in node:
            events += 1
            if events == limits.event_conditions + 1:
                events_over_at = _join(path, "event")
        stack.extend(reversed(_children(node, path, ceiling + 1)))
    errors = []
    if over_at is not None:
        total = f"over {ceiling}" if count > ceiling else str(count)
        errors.append(
            {
                "path": over_at,
                "message": f"the rule has {total} conditions (all / any / not count too); "
                f"at most {limits.conditions} conditions are allowed (RULE_MAX_CONDITIONS): "
                "split it into segments and refer to them",
            }
        )
    if events_over_at is not None:
        errors.append(
            {
                "path": events_over_at,
                "message": f"the rule has {events if count <= ceiling else 'more than ' + str(events)} "
                f"event conditions; at most {limits.event_conditions} event conditions "
                "are allowed (RULE_MAX_EVENT_CONDITIONS), each is a scan of the events",
            }
        )
    return errors


class _Validator:
    def __init__(self, limits: RuleLimits) -> None:
        self.limits = limits
        self.errors: list[dict] = []
        self.segment_refs: list[tuple[str, Any]] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "message": message})

    def node(self, node: Any, path: str, depth: int) -> None:
        if depth > self.limits.depth:
            self.error(path, f"conditions are nested deeper than {self.limits.depth} levels (RULE_MAX_DEPTH)")
            return
        if not isinstance(node, dict):
            self.error(path, 'must be an object such as {"all": [...]} or {"field": ..., "op": ..., "value": ...}')
            return
        kinds = [k for k in COMBINATORS + LEAF_KEYS if k in node]
        if len(kinds) != 1:
            if not kinds:
                self.error(
                    path,
                    "must have one of the keys: "
                    + ", ".join(COMBINATORS + LEAF_KEYS)
                    + (f" (got: {', '.join(map(str, node))})" if node else ""),
                )
            else:
                self.error(path, "must have only one of the keys " + ", ".join(kinds))
            return
        kind = kinds[0]
        if kind in ("all", "any"):
            self._extra_keys(node, path, {kind})
            children = node[kind]
            here = _join(path, kind)
            if not isinstance(children, list) or not children:
                self.error(here, "must be a non-empty list of conditions")
                return
            for i, child in enumerate(children):
                self.node(child, f"{here}[{i}]", depth + 1)
        elif kind == "not":
            self._extra_keys(node, path, {"not"})
            self.node(node["not"], _join(path, "not"), depth + 1)
        elif kind == "field":
            self._field(node, path)
        elif kind == "consent":
            self._extra_keys(node, path, {"consent"})
            if not isinstance(node["consent"], str) or node["consent"] not in CONSENT_FIELDS:
                self.error(
                    _join(path, "consent"),
                    "unknown consent channel (expected one of: " + ", ".join(CONSENT_FIELDS) + ")",
                )
        elif kind == "event":
            self._extra_keys(node, path, {"event"})
            self._event(node["event"], _join(path, "event"))
        elif kind == "affinity":
            self._extra_keys(node, path, {"affinity"})
            self._affinity(node["affinity"], _join(path, "affinity"))
        elif kind == "top":
            self._extra_keys(node, path, {"top"})
            self._top(node["top"], _join(path, "top"))
        else:
            self._extra_keys(node, path, {"segment"})
            ref = node["segment"]
            if not _is_whole(ref) or ref <= 0 or ref > MAX_SEGMENT_ID:
                self.error(_join(path, "segment"), "must be the id of a segment (a positive whole number)")
            else:
                self.segment_refs.append((_join(path, "segment"), ref))

    def _extra_keys(self, node: dict, path: str, allowed: set[str]) -> None:
        for key in node:
            if key not in allowed:
                self.error(_join(path, str(key)), "unknown key here (allowed: " + ", ".join(sorted(allowed)) + ")")

    def _field(self, node: dict, path: str) -> None:
        self._extra_keys(node, path, {"field", "op", "value"})
        name = node["field"]
        spec = PROFILE_FIELDS.get(name) if isinstance(name, str) else None
        if spec is None:
            self.error(
                _join(path, "field"), "unknown profile field (expected one of: " + ", ".join(PROFILE_FIELDS) + ")"
            )
            return
        op = node.get("op")
        if "op" not in node:
            self.error(_join(path, "op"), "is required")
            return
        if op not in spec.ops:
            self.error(
                _join(path, "op"),
                f"operator {op!r} does not apply to {name} (a {spec.kind}); use one of: " + ", ".join(spec.ops),
            )
            return
        vpath = _join(path, "value")
        if op in _NULL_OPS:
            if "value" in node:
                self.error(vpath, f"must be left out with {op!r}")
            return
        if "value" not in node:
            self.error(vpath, "is required")
            return
        value = node["value"]
        if op in _SET_OPS:
            if not isinstance(value, list) or not value:
                self.error(vpath, f"must be a non-empty list with {op!r}")
                return
            if len(value) > self.limits.list_values:
                self.error(vpath, f"lists at most {self.limits.list_values} values (RULE_MAX_LIST_VALUES)")
                return
            for i, v in enumerate(value):
                self._scalar(name, spec, v, f"{vpath}[{i}]")
        elif op == "between":
            if not isinstance(value, list) or len(value) != 2:
                self.error(vpath, "must be a list of two numbers [low, high] with 'between'")
                return
            ok = all([self._scalar(name, spec, v, f"{vpath}[{i}]") for i, v in enumerate(value)])
            if ok and value[0] > value[1]:
                self.error(vpath, "the low end must not be above the high end")
        elif op == "startswith":
            if not isinstance(value, str) or not _RFM_PREFIX_RE.match(value):
                self.error(vpath, 'must be 1 to 3 digits from 0 to 5, e.g. "5" or "54"')
        elif op == "matches":
            if not isinstance(value, str) or not _RFM_PATTERN_RE.match(value):
                self.error(vpath, 'must be 3 characters, each a digit from 0 to 5 or * for any, e.g. "5*5"')
        else:
            self._scalar(name, spec, value, vpath)

    def _scalar(self, name: str, spec: FieldSpec, value: Any, path: str) -> bool:
        if spec.kind == NUMERIC:
            if not _is_number(value):
                self.error(
                    path,
                    f"{name} is a number: expected a number (at most {MAX_NUMBER:.0e} either way), got {_show(value)}",
                )
                return False
            if spec.probability and not 0 <= value <= 1:
                self.error(path, f"{name} is a probability from 0 to 1 (0.3 for 30 %), got {_show(value)}")
                return False
        elif spec.kind == CHOICE:
            if value not in spec.choices:
                self.error(path, f"unknown {name} {_show(value)} (expected one of: " + ", ".join(spec.choices) + ")")
                return False
        elif spec.kind == TEXT:
            if not isinstance(value, str) or not value.strip() or not _storable(value):
                self.error(
                    path,
                    f"{name} is text: expected a non-empty string without NUL or invalid characters, "
                    f"got {_show(value)}",
                )
                return False
        elif spec.kind == RFM:
            if not isinstance(value, str) or not _RFM_RE.match(value):
                self.error(path, f'an RFM code is 3 digits from 0 to 5 (e.g. "545"), got {_show(value)}')
                return False
        return True

    def _event(self, spec: Any, path: str) -> None:
        if not isinstance(spec, dict):
            self.error(path, 'must be an object such as {"type": "purchase", "within_days": 90}')
            return
        for key in spec:
            if key not in EVENT_KEYS:
                self.error(_join(path, str(key)), "unknown key here (allowed: " + ", ".join(EVENT_KEYS) + ")")
        tpath = _join(path, "type")
        if "type" not in spec:
            self.error(tpath, "is required")
        else:
            types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
            if not types:
                self.error(tpath, "must name an event type or a non-empty list of them")
            elif len(types) > self.limits.list_values:
                self.error(tpath, f"lists at most {self.limits.list_values} values (RULE_MAX_LIST_VALUES)")
                types = []
            for i, t in enumerate(types):
                if t not in EVENT_TYPES:
                    where = f"{tpath}[{i}]" if isinstance(spec["type"], list) else tpath
                    self.error(
                        where, f"unknown event type {_show(t)} (expected one of: " + ", ".join(EVENT_TYPES) + ")"
                    )
        if "within_days" in spec:
            d = spec["within_days"]
            if not _is_whole(d) or d <= 0:
                self.error(_join(path, "within_days"), "must be a positive whole number of days")
            elif d > MAX_DAYS:
                self.error(_join(path, "within_days"), f"must be at most {MAX_DAYS} days")
        lo, hi = spec.get("min_count"), spec.get("max_count")
        for key, val in (("min_count", lo), ("max_count", hi)):
            if key in spec and (not _is_whole(val) or val < 0 or val > MAX_COUNT):
                self.error(_join(path, key), "must be a whole number of times, 0 or more")
        if _is_whole(lo) and _is_whole(hi) and lo > hi:
            self.error(_join(path, "max_count"), "must not be below min_count")
        for key in ("category", "item"):
            if key in spec and (not isinstance(spec[key], str) or not spec[key].strip() or not _storable(spec[key])):
                self.error(_join(path, key), "must be a non-empty string without NUL or invalid characters")
        if "item_kind" in spec and spec["item_kind"] not in ITEM_KINDS:
            self.error(_join(path, "item_kind"), "unknown item kind (expected one of: " + ", ".join(ITEM_KINDS) + ")")

    def _affinity(self, spec: Any, path: str) -> None:
        if not isinstance(spec, dict):
            self.error(path, 'must be an object such as {"category": "Garden", "op": ">=", "value": 0.4}')
            return
        for key in spec:
            if key not in AFFINITY_KEYS:
                self.error(_join(path, str(key)), "unknown key here (allowed: " + ", ".join(AFFINITY_KEYS) + ")")
        cpath = _join(path, "category")
        category = spec.get("category")
        if "category" not in spec:
            self.error(cpath, "is required: the item category the affinity is for")
        elif not isinstance(category, str) or not category.strip() or not _storable(category):
            self.error(cpath, f"must be a category name (non-empty text without NUL), got {_show(category)}")
        elif len(category) > MAX_CATEGORY_LENGTH:
            self.error(cpath, f"a category name is at most {MAX_CATEGORY_LENGTH} characters")
        op = spec.get("op")
        if "op" not in spec:
            self.error(_join(path, "op"), "is required")
            return
        if op not in AFFINITY_OPS:
            self.error(
                _join(path, "op"),
                f"operator {_show(op)} does not apply to an affinity; use one of: " + ", ".join(AFFINITY_OPS),
            )
            return
        vpath = _join(path, "value")
        if "value" not in spec:
            self.error(vpath, "is required")
            return
        value = spec["value"]
        values = value if op == "between" else [value]
        if op == "between" and (not isinstance(value, list) or len(value) != 2):
            self.error(vpath, "must be a list of two probabilities [low, high] with 'between'")
            return
        ok = True
        for i, v in enumerate(values):
            if not _is_number(v) or not 0 <= v <= 1:
                where = f"{vpath}[{i}]" if op == "between" else vpath
                self.error(where, f"an affinity is a probability from 0 to 1 (0.4 for 40 %), got {_show(v)}")
                ok = False
        if ok and op == "between" and value[0] > value[1]:
            self.error(vpath, "the low end must not be above the high end")

    def _top(self, spec: Any, path: str) -> None:
        if not isinstance(spec, dict):
            self.error(path, 'must be an object such as {"field": "predicted_value", "percent": 10}')
            return
        for key in spec:
            if key not in TOP_KEYS:
                self.error(_join(path, str(key)), "unknown key here (allowed: " + ", ".join(TOP_KEYS) + ")")
        fpath = _join(path, "field")
        if "field" not in spec:
            self.error(fpath, "is required: the figure to rank the customers by")
        elif not isinstance(spec["field"], str) or spec["field"] not in TOP_FIELDS:
            self.error(
                fpath, f"cannot rank by {_show(spec['field'])} (expected a number field: " + ", ".join(TOP_FIELDS) + ")"
            )
        ppath = _join(path, "percent")
        if "percent" not in spec:
            self.error(ppath, "is required: the share of customers to take, e.g. 10 for the top 10 %")
        elif not _is_number(spec["percent"]) or not 0 < spec["percent"] <= 100:
            self.error(
                ppath,
                f"must be a percentage above 0 and at most 100 (10 for the top 10 %), got {_show(spec['percent'])}",
            )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _rule_of(segment: Segment | None) -> Any:
    return segment.rule if segment is not None and segment.kind == SegmentKind.RULE else None


def segment_refs(rule: Any) -> set[int]:
    """The ids of the segments a (structurally valid) rule refers to directly."""
    found, stack = set(), [rule]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if _is_whole(node.get("segment")):
            found.add(node["segment"])
        for key in ("all", "any"):
            if isinstance(node.get(key), list):
                stack.extend(node[key])
        if "not" in node:
            stack.append(node["not"])
    return found


def _check_segments(refs: list[tuple[str, int]], segment_id: int | None, errors: list[dict]) -> None:
    """Unknown ids and cycles. One query per level of indirection (usually one or two)."""
    if not refs:
        return
    wanted = {ref for _, ref in refs}
    known: dict[int, Any] = {
        pk: (kind, rule) for pk, kind, rule in Segment.objects.filter(pk__in=wanted).values_list("pk", "kind", "rule")
    }
    for path, ref in refs:
        if ref not in known:
            errors.append({"path": path, "message": f"there is no segment with id {ref}"})
        elif segment_id is not None and ref == segment_id:
            errors.append({"path": path, "message": "a segment cannot refer to itself"})
    if segment_id is None:
        return
    # Walk the references of the referenced rule segments: does any chain lead back to segment_id?
    # `reaches[x]` = the direct reference (path) through which x was first reached.
    reaches: dict[int, str] = {}
    frontier: dict[int, str] = {}
    for path, ref in refs:
        if ref in known and ref != segment_id and ref not in reaches:
            reaches[ref] = path
            frontier[ref] = path
    graph = {pk: (kind, rule) for pk, (kind, rule) in known.items()}
    reported: set[str] = set()
    while frontier:
        nxt: dict[int, str] = {}
        for pk, path in frontier.items():
            kind, rule = graph[pk]
            if kind != SegmentKind.RULE:
                continue
            for child in segment_refs(rule):
                if child == segment_id:
                    if path not in reported:
                        reported.add(path)
                        errors.append(
                            {
                                "path": path,
                                "message": f"segment {pk} refers back to this segment, "
                                "directly or through other segments (a cycle)",
                            }
                        )
                elif child not in reaches:
                    reaches[child] = path
                    nxt[child] = path
        missing = [pk for pk in nxt if pk not in graph]
        if missing:
            graph.update(
                {
                    pk: (kind, rule)
                    for pk, kind, rule in Segment.objects.filter(pk__in=missing).values_list("pk", "kind", "rule")
                }
            )
        frontier = {pk: p for pk, p in nxt.items() if pk in graph}


def validate_rule(rule: Any, *, segment_id: int | None = None) -> None:
    """Raise `RuleError` listing every problem of `rule`, each with the path of the bad part.

    `segment_id` is the segment being edited: a rule may not refer to it, directly or through
    other rule segments. Segment references cost one query per level of indirection; a rule
    without them touches no database.
    """
    if rule is None or (isinstance(rule, dict) and not rule):
        raise RuleError([{"path": "", "message": "the rule is empty"}])
    limits = RuleLimits.current()
    # The cost first: a rule over the limits is refused before anything else is looked at.
    too_costly = _cost_errors(rule, limits)
    if too_costly:
        raise RuleError(too_costly)
    v = _Validator(limits)
    v.node(rule, "", 1)
    _check_segments(v.segment_refs, segment_id, v.errors)
    if v.errors:
        raise RuleError(v.errors)


# --- compilation ---------------------------------------------------------------------------------

_TRUE = Q(pk__isnull=False)  # an always-true, non-empty Q (an empty Q() misbehaves under ~)


def _profile_q(node: dict) -> Q:
    name, op = node["field"], node["op"]
    spec = PROFILE_FIELDS[name]
    present = Q(**{f"{name}__isnull": False})
    if spec.blank_is_missing:
        present &= ~Q(**{name: ""})
    if op in _NULL_OPS:
        has = Exists(Profile.objects.filter(present, customer_id=OuterRef("pk")))
        return Q(has) if op == "is not null" else ~Q(has)
    value = node["value"]
    if op == "=":
        cond = Q(**{name: value})
    elif op == "!=":
        cond = ~Q(**{name: value})
    elif op in ("<", "<=", ">", ">="):
        lookup = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op]
        cond = Q(**{f"{name}__{lookup}": value})
    elif op == "in":
        cond = Q(**{f"{name}__in": value})
    elif op == "not in":
        cond = ~Q(**{f"{name}__in": value})
    elif op == "between":
        cond = Q(**{f"{name}__range": (value[0], value[1])})
    elif op == "startswith":
        cond = Q(**{f"{name}__startswith": value})
    elif op == "matches":
        parts = [Q(Exact(Substr(name, i + 1, 1), ch)) for i, ch in enumerate(value) if ch != "*"]
        cond = reduce(lambda a, b: a & b, parts, _TRUE)
    else:  # pragma: no cover - validation rejects it
        raise ValueError(op)
    # A comparison with a missing value is false (SQL's NULL semantics, made explicit), and a
    # customer without a profile matches none; EXISTS keeps the result two-valued for `not`.
    return Q(Exists(Profile.objects.filter(present, cond, customer_id=OuterRef("pk"))))


class _AffinityOf(Func):
    """A customer's affinity for one category, as a float (NULL when the category is not in the dict).

    The category is operator text: it travels as a query parameter (compared with the keys of
    `json_each` on SQLite, the key of `->>` on PostgreSQL), never spliced into the SQL. Django's own
    key lookups would read a category such as "2024" as an array index and split one holding "__";
    this reads it as a key, always.
    """

    output_field = FloatField()

    def __init__(self, category: str) -> None:
        super().__init__(F("affinity"))
        self.category = category

    def as_sql(self, compiler, connection, **extra):  # SQLite
        # The key compared as a value (a JSON path would need quoting SQLite does not unescape).
        column, params = compiler.compile(self.source_expressions[0])
        return f"(SELECT je.value FROM json_each({column}) AS je WHERE je.key = %s)", [*params, self.category]

    def as_postgresql(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        return f"(({column} ->> %s::text)::double precision)", [*params, self.category]


def _affinity_q(spec: dict) -> Q:
    # A category missing from the dict is "not a candidate": its affinity counts as 0.
    affinity = Coalesce(_AffinityOf(spec["category"]), Value(0.0), output_field=FloatField())
    op, value = spec["op"], spec["value"]
    if op == "between":
        cond = Q(affinity_of__gte=float(value[0]), affinity_of__lte=float(value[1]))
    elif op == "!=":
        cond = ~Q(affinity_of=float(value))
    else:
        lookup = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op]
        cond = Q(**{f"affinity_of__{lookup}": float(value)})
    # Customers without a profile match no affinity condition (as every profile condition); EXISTS
    # keeps the leaf two-valued, so `not` is its exact complement.
    return Q(Exists(Profile.objects.alias(affinity_of=affinity).filter(cond, customer_id=OuterRef("pk"))))


class _TopThreshold(Func):
    """The value of `field` at rank ceil(n × percent / 100) among the n profiles where it is known,
    highest first: one uncorrelated scalar subquery (ORDER BY ... LIMIT 1 OFFSET k - 1, which both
    PostgreSQL and SQLite take as an expression). NULL when no profile has the field, so nobody matches.
    """

    output_field = FloatField()

    def __init__(self, field: str, percent: float) -> None:
        super().__init__()
        self.ranked, self.percent = field, float(percent)

    def as_sql(self, compiler, connection, **extra):
        quote = connection.ops.quote_name
        table, column = quote(Profile._meta.db_table), quote(Profile._meta.get_field(self.ranked).column)
        # `field` comes from the validator's fixed list of profile columns, `percent` is a parameter.
        # CEILING is native on PostgreSQL and registered by Django on SQLite.
        sql = (
            f"(SELECT {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY {column} DESC LIMIT 1 "
            "OFFSET (SELECT CASE WHEN COUNT(*) = 0 THEN 0 "
            "ELSE CAST(CEILING(COUNT(*) * %s / 100.0) AS INTEGER) - 1 END "
            f"FROM {table} WHERE {column} IS NOT NULL))"
        )
        return sql, [self.percent]


def _top_q(spec: dict) -> Q:
    # Ties at the threshold are all in: everyone whose value reaches it, so the top 10 % may be more
    # than 10 % of the customers when many share the threshold value (docs/rules.md).
    field = spec["field"]
    threshold = _TopThreshold(field, spec["percent"])
    return Q(Exists(Profile.objects.filter(**{f"{field}__gte": threshold}, customer_id=OuterRef("pk"))))


def _event_q(spec: dict, now: datetime) -> Q:
    types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    events_filter = Q(type__in=types)
    if "within_days" in spec:
        events_filter &= Q(occurred_at__gte=now - timedelta(days=spec["within_days"]))
    if "category" in spec:
        events_filter &= Q(item__category=spec["category"])
    if "item_kind" in spec:
        events_filter &= Q(item__kind=spec["item_kind"])
    if "item" in spec:
        events_filter &= Q(item__external_id=spec["item"])
    events = Event.objects.filter(events_filter, customer_id=OuterRef("pk")).order_by()
    hi = spec.get("max_count")
    lo = spec.get("min_count", 1 if hi is None else 0)

    def at_least(n: int) -> Q:
        if n <= 1:
            return Q(Exists(events))
        # Uncorrelated, so PostgreSQL hashes it once instead of counting per customer. `customer_id`
        # is never NULL, so NOT IN under `not` stays an exact complement.
        counted = (
            Event.objects.filter(events_filter)
            .order_by()
            .values("customer_id")
            .annotate(n_events=Count("pk"))
            .filter(n_events__gte=n)
            .values("customer_id")
        )
        return Q(pk__in=counted)

    q = _TRUE
    if lo >= 1:
        q = at_least(lo)
    if hi is not None:
        q &= ~at_least(hi + 1)
    return q


def _compile(node: dict, now: datetime) -> Q:
    if "all" in node:
        return reduce(lambda a, b: a & b, (_compile(c, now) for c in node["all"]))
    if "any" in node:
        return reduce(lambda a, b: a | b, (_compile(c, now) for c in node["any"]))
    if "not" in node:
        return ~_compile(node["not"], now)
    if "field" in node:
        return _profile_q(node)
    if "consent" in node:
        return Q(**{CONSENT_FIELDS[node["consent"]]: True})
    if "event" in node:
        return _event_q(node["event"], now)
    if "affinity" in node:
        return _affinity_q(node["affinity"])
    if "top" in node:
        return _top_q(node["top"])
    return Q(Exists(Membership.objects.filter(segment_id=node["segment"], customer_id=OuterRef("pk"))))


def compile_rule(rule: Any, *, now: datetime | None = None, segment_id: int | None = None) -> Q:
    """The rule as a `Q` over `Customer` (validated first; raises `RuleError`).

    `now` anchors every `within_days` window (default: the current time).
    """
    validate_rule(rule, segment_id=segment_id)
    return _compile(rule, now or timezone.now())


def rule_queryset(rule: Any, *, now: datetime | None = None) -> QuerySet[Customer]:
    """The customers matching `rule`: one SQL query when evaluated, each customer once."""
    # Every leaf is an EXISTS or a column of Customer itself, so no join can repeat a customer.
    return Customer.objects.filter(compile_rule(rule, now=now))


def rule_audience_size(rule: Any, *, now: datetime | None = None) -> int:
    """How many customers match `rule`: one COUNT query (plus one per level of segment references,
    to check them, when the rule refers to other segments)."""
    return rule_queryset(rule, now=now).count()


def _leaves(rule: Any):
    stack = [rule]
    while stack:
        node = stack.pop()
        if isinstance(node, dict) and ("all" in node or "any" in node):
            stack.extend(node.get("all") or node.get("any") or [])
        elif isinstance(node, dict) and "not" in node:
            stack.append(node["not"])
        else:
            yield node


@dataclass(frozen=True)
class Changed:
    """What an incremental segments run changed: `customers` (ids) got new profiles and clustering
    segments since `since` (when the previous segments run started), from every event up to
    `seen_event_id` (the latest profiles run's watermark)."""

    customers: np.ndarray
    since: datetime
    seen_event_id: int


def narrow_candidates(
    segment: Segment, *, changed: Changed, now: datetime, narrowed: dict[int, np.ndarray]
) -> np.ndarray | None:
    """The only customers whose membership of a rule segment can have changed since it was last
    refreshed, on an incremental run; None when it must be refreshed in full.

    `narrowed`: rule segments already refreshed this way in this run, with their candidates. A rule
    last evaluated at `refreshed_at` (not before `changed.since`, and not edited after) can change
    its answer for a customer only if that customer's profile or memberships changed
    (`changed.customers`, and the candidates of the segments it names), they have events no profiles
    run has seen yet (after `changed.seen_event_id`), their consent changed (`consent_updated_at`),
    or one of their events left a `within_days` window between then and now. A rule with "top N %"
    (everyone's values move it), with events in a category (an item's category may change) or
    naming a segment refreshed in full is refreshed in full."""
    last = segment.refreshed_at
    if last is None or last < changed.since or (segment.updated_at and segment.updated_at > last):
        return None
    parts = [np.asarray(changed.customers, dtype=np.int64)]
    unseen = False
    for leaf in _leaves(segment.rule):
        if not isinstance(leaf, dict) or "top" in leaf:
            return None
        if "segment" in leaf:
            ref = leaf["segment"]
            if ref in narrowed:
                parts.append(narrowed[ref])
            elif not Segment.objects.filter(pk=ref, kind=SegmentKind.CLUSTER).exists():
                return None
        elif "consent" in leaf:
            parts.append(
                np.fromiter(
                    Customer.objects.filter(consent_updated_at__gte=last).values_list("pk", flat=True), dtype=np.int64
                )
            )
        elif "event" in leaf and isinstance(leaf["event"], dict):
            if "category" in leaf["event"]:
                # an item moved to another category changes the answer of everyone who had events on
                # it, with no event of theirs (items record no time of change): in full
                return None
            if not unseen:  # events newer than any profile: a full refresh would read them
                newer = Event.objects.filter(id__gt=changed.seen_event_id).order_by()
                parts.append(np.fromiter(newer.values_list("customer_id", flat=True).distinct(), dtype=np.int64))
                unseen = True
            if "within_days" in leaf["event"]:
                days = timedelta(days=leaf["event"]["within_days"])
                types = leaf["event"]["type"] if isinstance(leaf["event"]["type"], list) else [leaf["event"]["type"]]
                left = Event.objects.filter(type__in=types, occurred_at__gte=last - days, occurred_at__lt=now - days)
                left = left.order_by()
                parts.append(np.fromiter(left.values_list("customer_id", flat=True).distinct(), dtype=np.int64))
        elif not ("field" in leaf or "affinity" in leaf):
            return None
    return np.unique(np.concatenate(parts))


def refresh_rule_memberships(segment: Segment, *, now: datetime | None = None, step=None, among=None) -> int:
    """Replace the memberships of a rule segment with its current audience, in one transaction.

    Set-based: one DELETE of the members who left and one INSERT ... SELECT of those who joined,
    so customers who stay keep their `since`; on PostgreSQL both in one statement reading the
    audience once. Updates the segment's size, `refreshed_at` and
    `members_version`, and records a `SegmentSize`. Returns the new size.

    `among` (customer ids): re-evaluate the rule for those customers only and leave every other
    membership as it is (an incremental run: `narrow_candidates`).
    """
    if segment.kind != SegmentKind.RULE:
        raise ValueError(f"segment {segment.pk} is not a rule segment")
    now = now or timezone.now()
    q = compile_rule(segment.rule, now=now, segment_id=segment.pk)
    db = Membership.objects.db
    with transaction.atomic(using=db):
        # Serialise refreshes of one segment: a second run waits, then recomputes from scratch.
        Segment.objects.using(db).select_for_update().filter(pk=segment.pk).values_list("pk").first()
        audience = Customer.objects.using(db).filter(q)
        if among is not None:
            among = id_subquery(among)
            size = _swap_members(db, segment.pk, audience.filter(pk__in=among), now, among=among)
        elif connections[db].vendor == "postgresql":
            size = _swap_members_in_one_statement(db, segment.pk, audience, now)
        else:
            size = _swap_members(db, segment.pk, audience, now)
        Segment.objects.using(db).filter(pk=segment.pk).update(
            size=size, refreshed_at=now, members_version=F("members_version") + 1
        )
        SegmentSize.objects.using(db).create(segment_id=segment.pk, at=now, size=size, step=step)
        segment.members_version = Segment.objects.using(db).values_list("members_version", flat=True).get(pk=segment.pk)
    segment.size, segment.refreshed_at = size, now
    return size


def _swap_members_in_one_statement(db: str, segment_id: int, audience: QuerySet[Customer], now: datetime) -> int:
    """PostgreSQL: the audience is computed once (a materialised CTE) and both the DELETE of the
    members who left and the INSERT of those who joined read it, in one statement; the new size
    is the audience's count (the members are then exactly the audience). Returns the size."""
    connection = connections[db]
    sql, params = audience.order_by().values_list("pk").query.get_compiler(using=db).as_sql()
    table = connection.ops.quote_name(Membership._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH audience (id) AS MATERIALIZED ({sql}),
            leavers AS (
                DELETE FROM {table} m
                WHERE m.segment_id = %s AND NOT EXISTS (SELECT 1 FROM audience a WHERE a.id = m.customer_id)
                RETURNING 1
            ),
            joiners AS (
                INSERT INTO {table} (segment_id, customer_id, since)
                SELECT %s, a.id, %s FROM audience a
                WHERE NOT EXISTS (SELECT 1 FROM {table} m WHERE m.segment_id = %s AND m.customer_id = a.id)
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM audience), (SELECT count(*) FROM leavers), (SELECT count(*) FROM joiners)
            """,
            [*params, segment_id, segment_id, connection.ops.adapt_datetimefield_value(now), segment_id],
        )
        size, _left, _joined = cursor.fetchone()
    return int(size)


def _swap_members(db: str, segment_id: int, audience: QuerySet[Customer], now: datetime, among=None) -> int:
    """Other databases (and a refresh `among` some customers): one DELETE of the members who left,
    one INSERT ... SELECT of those who joined (customers who stay keep their `since`), then a count.
    Returns the size."""
    members = Membership.objects.using(db).filter(segment_id=segment_id)
    if among is not None:
        members = members.filter(customer_id__in=among)
    members.exclude(customer_id__in=audience.values("pk")).delete()
    joiners = (
        audience.exclude(Exists(Membership.objects.filter(segment_id=segment_id, customer_id=OuterRef("pk"))))
        .order_by()
        .values(member_id=F("pk"))
    )
    connection = connections[db]
    sql, params = joiners.query.get_compiler(using=db).as_sql()
    table = connection.ops.quote_name(Membership._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in ("segment_id", "customer_id", "since"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT %s, joiners.member_id, %s FROM ({sql}) joiners",
            [segment_id, connection.ops.adapt_datetimefield_value(now), *params],
        )
    return Membership.objects.using(db).filter(segment_id=segment_id).count()


def rule_refresh_order(segments: list[Segment]) -> list[Segment]:
    """The rule segments ordered so that a segment comes after the segments its rule refers to
    (refresh them in this order on a pipeline run, so `{"segment": id}` reads fresh members)."""
    by_id = {s.pk: s for s in segments}
    order: list[Segment] = []
    state: dict[int, int] = {}  # 1 = visiting, 2 = done

    def visit(seg: Segment) -> None:
        if state.get(seg.pk) == 2:
            return
        if state.get(seg.pk) == 1:  # a cycle slipped in: break it rather than loop
            return
        state[seg.pk] = 1
        for ref in sorted(segment_refs(_rule_of(seg))):
            if ref in by_id:
                visit(by_id[ref])
        state[seg.pk] = 2
        order.append(seg)

    for seg in segments:
        visit(seg)
    return order


# --- description ---------------------------------------------------------------------------------

_OP_TEXT = {"=": "=", "!=": "≠", "<": "<", "<=": "≤", ">": ">", ">=": "≥"}
_VERBS = {
    "view": "viewed",
    "click": "clicked",
    "add_to_cart": "added to cart",
    "purchase": "purchased",
    "rating": "rated",
    "favorite": "favourited",
    "like": "liked",
    "comment": "commented",
    "post": "posted",
    "share": "shared",
    "search": "searched",
    "return": "returned",
}


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# How the predictions read in a rule's description ("chance still a buyer below 30%").
_PREDICTION_WORDS = {
    "p_alive": "chance still a buyer",
    "churn_risk": "churn risk",
    "predicted_orders": "predicted orders",
    "predicted_value": "predicted spend",
    "prediction_basis": "prediction basis",
}
_OP_WORDS = {"=": "exactly", "!=": "not", "<": "below", "<=": "at most", ">": "above", ">=": "at least"}


def _pct(value: Any) -> str:
    if not _is_number(value):
        return str(value)
    return f"{round(value * 100, 1):g}%"


def _describe_prediction(name: str, op: Any, value: Any) -> str | None:
    """The prediction fields in words, probabilities as percentages; None for other fields."""
    if name not in _PREDICTION_WORDS:
        return None
    words = _PREDICTION_WORDS[name]
    show = _pct if PROFILE_FIELDS[name].probability else _fmt
    if op in _OP_WORDS and name != "prediction_basis":
        return f"{words} {_OP_WORDS[op]} {show(value)}"
    if op == "between" and isinstance(value, list) and len(value) == 2:
        return f"{words} between {show(value[0])} and {show(value[1])}"
    if op == "is null":
        return f"{words} not predicted yet"
    if op == "is not null":
        return f"{words} predicted"
    return None


def _describe(node: Any, top: bool) -> str:
    if not isinstance(node, dict):
        return "?"
    for key, word in (("all", " AND "), ("any", " OR ")):
        if key in node and isinstance(node[key], list):
            parts = [_describe(c, False) for c in node[key]]
            text = word.join(parts) if parts else "(nothing)"
            return text if top or len(parts) == 1 else f"({text})"
    if "not" in node:
        return f"NOT {_describe(node['not'], False)}"
    if "field" in node:
        name, op, value = node.get("field"), node.get("op"), node.get("value")
        words = _describe_prediction(name, op, value) if isinstance(name, str) else None
        if words:
            return words
        if op in _OP_TEXT:
            return f"{name} {_OP_TEXT[op]} {_fmt(value)}"
        if op in _SET_OPS and isinstance(value, list):
            return f"{name} {op} ({', '.join(_fmt(v) for v in value)})"
        if op == "between" and isinstance(value, list) and len(value) == 2:
            return f"{name} between {_fmt(value[0])} and {_fmt(value[1])}"
        if op == "startswith":
            return f"{name} starts with {value}"
        if op == "matches":
            return f"{name} matches {value}"
        if op == "is null":
            return f"{name} is unknown"
        if op == "is not null":
            return f"{name} is known"
        return f"{name} {op} {_fmt(value)}"
    if "consent" in node:
        return f"consents to {str(node['consent']).replace('_', '-')}"
    if "segment" in node:
        return f"in segment #{node['segment']}"
    if "event" in node and isinstance(node["event"], dict):
        return _describe_event(node["event"])
    if "affinity" in node and isinstance(node["affinity"], dict):
        spec = node["affinity"]
        op, value = spec.get("op"), spec.get("value")
        what = f"affinity for {spec.get('category')}"
        if op == "between" and isinstance(value, list) and len(value) == 2:
            return f"{what} between {_pct(value[0])} and {_pct(value[1])}"
        return f"{what} {_OP_WORDS.get(op, str(op))} {_pct(value)}"
    if "top" in node and isinstance(node["top"], dict):
        field = node["top"].get("field")
        words = _PREDICTION_WORDS.get(field) or FIELD_LABELS.get(field, str(field)).lower()
        return f"top {_fmt(node['top'].get('percent'))}% by {words}"
    return "?"


def _describe_event(spec: dict) -> str:
    types = spec.get("type")
    types = types if isinstance(types, list) else [types]
    verb = " or ".join(_VERBS.get(t, str(t)) for t in types)
    what = []
    if spec.get("item"):
        what.append(f"{spec.get('item_kind', 'item')} {spec['item']}")
    elif spec.get("item_kind"):
        what.append(f"a {spec['item_kind']}")
    if spec.get("category"):
        what.append(f"in {spec['category']}")
    hi = spec.get("max_count")
    lo = spec.get("min_count", 1 if hi is None else 0)
    if hi == 0:
        count = None
        verb = f"never {verb}"
    elif hi is not None and lo == hi:
        count = f"exactly {lo} time{'s' if lo != 1 else ''}"
    elif hi is not None:
        count = f"{lo}–{hi} times" if lo else f"≤ {hi} time{'s' if hi != 1 else ''}"
    elif lo > 1:
        count = f"≥ {lo} times"
    else:
        count = None
    window = f"in {spec['within_days']} days" if "within_days" in spec else ("ever" if hi == 0 or count else "")
    if hi == 0 and "within_days" in spec:
        window = f"in the last {spec['within_days']} days"
    elif hi == 0:
        window = ""
    return " ".join(p for p in [verb, *what, count or "", window] if p)


def describe_rule(rule: Any) -> str:
    """A one-line English reading of a rule, for the admin list and the campaign screens."""
    return _describe(rule, True)


# --- the grammar as data, for the admin's rule builder ------------------------------------------

# Operator words for the vocabulary above. They label; the grammar (what is accepted) stays the
# tables above, which `rule_grammar` reads, so the builder cannot offer what the validator refuses.
FIELD_LABELS = {
    "recency_days": "Days since last purchase",
    "frequency": "Orders in the window",
    "monetary": "Spend in the window",
    "avg_order_value": "Average order value",
    "r_score": "Recency score (R, 1-5)",
    "f_score": "Frequency score (F, 1-5)",
    "m_score": "Monetary score (M, 1-5)",
    "active_days": "Active days in the window",
    "events_30d": "Events in the last 30 days",
    "n_events": "Events in the window",
    "community_posts": "Community posts",
    "community_comments": "Community comments",
    "community_likes": "Community likes",
    "orders_total": "Orders, all time",
    "median_price": "Median price of items seen",
    "lifecycle": "Lifecycle stage",
    "price_band": "Price band",
    "top_category": "Top category",
    "rfm_code": "RFM code",
    "p_alive": "Chance still a buyer (0-1)",
    "churn_risk": "Churn risk (0-1)",
    "predicted_orders": "Predicted orders",
    "predicted_value": "Predicted spend",
    "prediction_basis": "Prediction basis",
}
_OP_LABELS = {
    "=": "is",
    "!=": "is not",
    "<": "is less than",
    "<=": "is at most",
    ">": "is more than",
    ">=": "is at least",
    "in": "is one of",
    "not in": "is none of",
    "between": "is between",
    "is null": "is unknown",
    "is not null": "is known",
    "startswith": "starts with",
    "matches": "matches the pattern",
}


_EVENT_PARAMS = {
    "type": {"kind": "types", "label": "did"},
    "min_count": {"kind": "whole", "label": "at least", "unit": "times", "min": 0, "max": MAX_COUNT},
    "max_count": {"kind": "whole", "label": "at most", "unit": "times", "min": 0, "max": MAX_COUNT},
    "within_days": {"kind": "whole", "label": "in the last", "unit": "days", "min": 1, "max": MAX_DAYS},
    "category": {"kind": "text", "label": "in category", "suggest": "categories"},
    "item_kind": {"kind": "choice", "label": "on a", "choices": "item_kinds"},
    "item": {"kind": "text", "label": "item id"},
}


def _value_shape(op: str) -> str:
    """What an operator takes as its value: nothing, one value, a list, a [low, high] pair, or a pattern."""
    if op in _NULL_OPS:
        return "none"
    if op in _SET_OPS:
        return "list"
    if op == "between":
        return "pair"
    return op if op in ("startswith", "matches") else "one"


def _labels(choices: type) -> dict[str, str]:
    return {str(c.value): str(c.label) for c in choices}


def rule_grammar() -> dict:
    """The grammar of rules as data (JSON-ready), for the admin's rule builder.

    Built from the tables the validator reads (PROFILE_FIELDS, EVENT_KEYS, EVENT_TYPES, ITEM_KINDS,
    CONSENT_FIELDS, COMBINATORS, the limits), so every field, operator and value the validator
    accepts is offered, and nothing else. Values known only to the shop (categories, segments)
    are not grammar: the admin hands them to the page beside it.
    """
    limits = RuleLimits.current()
    choice_labels = {
        "lifecycle": _labels(Lifecycle),
        "price_band": _labels(PriceBand),
        "prediction_basis": _labels(PredictionBasis),
    }
    return {
        "combinators": list(COMBINATORS),
        "leaves": list(LEAF_KEYS),
        "fields": [
            {
                "name": name,
                "label": FIELD_LABELS.get(name, name.replace("_", " ").capitalize()),
                "kind": spec.kind,
                "ops": list(spec.ops),
                "choices": [{"value": c, "label": choice_labels.get(name, {}).get(c, c)} for c in spec.choices],
                "group": "Predictions" if name in PREDICTION_FIELDS else "Profile",
                **({"min": 0, "max": 1} if spec.probability else {}),
            }
            for name, spec in PROFILE_FIELDS.items()
        ],
        "operators": {
            op: {"label": _OP_LABELS.get(op, op), "value": _value_shape(op)}
            for op in dict.fromkeys(op for spec in PROFILE_FIELDS.values() for op in spec.ops)
        },
        "event": {
            "keys": list(EVENT_KEYS),
            "required": ["type"],
            # How each key is asked for, in EVENT_KEYS order: its kind of value and its words.
            "params": [_EVENT_PARAMS[key] | {"key": key} for key in EVENT_KEYS],
            "types": [{"value": t, "label": _VERBS.get(t, str(EventType(t).label).lower())} for t in EVENT_TYPES],
            "item_kinds": [{"value": k, "label": str(ItemKind(k).label)} for k in ITEM_KINDS],
            "max_days": MAX_DAYS,
            "max_count": MAX_COUNT,
        },
        "consent": [{"value": c, "label": c.replace("_", "-")} for c in CONSENT_FIELDS],
        # {"affinity": {"category", "op", "value"}}: the predicted chance to buy from a category
        # in the horizon, 0 to 1 (the categories are the shop's: the admin hands them beside it).
        "affinity": {
            "keys": list(AFFINITY_KEYS),
            "ops": list(AFFINITY_OPS),
            "min": 0,
            "max": 1,
            "horizon_days": int(settings.PREDICTION_HORIZON_DAYS),
        },
        # {"top": {"field", "percent"}}: the customers with the highest values of a number field.
        "top": {
            "keys": list(TOP_KEYS),
            "fields": [{"value": f, "label": FIELD_LABELS.get(f, f)} for f in TOP_FIELDS],
            "default_field": "predicted_value",
            "min_percent": 0,
            "max_percent": 100,
        },
        "max_number": MAX_NUMBER,
        "limits": {
            "conditions": limits.conditions,
            "event_conditions": limits.event_conditions,
            "depth": limits.depth,
            "list_values": limits.list_values,
        },
    }
