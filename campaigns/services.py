"""
The verbs of campaigns: change status, launch (snapshot the audience), send in chunks, track, attribute.

Exactly once, per delivery (see docs/campaigns.md, "Delivery guarantee"):

1. `deliveries_send` claims rows in one transaction: a conditional UPDATE moves them from
   queued (or deferred and due) to `sending`, stamped with the task attempt's key and a
   deterministic provider key. Rows another live attempt holds are not claimable; rows in
   `sending` under the same task id (the broker redelivered the task after its worker died) or
   claimed longer ago than CAMPAIGN_CLAIM_TIMEOUT_SECONDS are.
2. The channel sends; right after each batch the rows it accepted become `sent` (only where
   still `sending` under this claim). A rerun of the task skips every row already `sent`.
3. The one window left is a crash between the channel's acceptance and the UPDATE: in-app has
   none (its send is the UPDATE); push carries `Idempotency-Key` = provider key, which the
   receiver dedupes on; email carries a Message-ID built from the provider key, so a resend is
   the same message to any system that dedupes on it.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from django.conf import settings
from django.core import signing
from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.expressions import RawSQL
from django.utils import timezone

from common.bulk import bulk_insert, read_frame
from experiments.stats import assign, unit_hash
from profiles.models import CONSENT_FIELDS, Customer, Event, Item, Profile
from profiles.services import events_ingest
from segments.models import Membership

from .channels import Message, channel_for
from .models import (
    TRANSITIONS,
    Campaign,
    CampaignKind,
    CampaignsAuditAction,
    CampaignStatus,
    CampaignVariant,
    Channel,
    Delivery,
    DeliveryStatus,
    ScheduleKind,
    StatusChange,
    SuppressReason,
)
from .rendering import TemplateError, freeze, render

log = logging.getLogger(__name__)

OPEN = (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)
UNSUBSCRIBE_SALT = "campaigns.unsubscribe"
PROFILE_FIELDS = (
    "lifecycle",
    "rfm_code",
    "top_category",
    "orders_total",
    "recency_days",
    "monetary",
    "price_band",
    "avg_order_value",
    "frequency",
)


class TransitionError(Exception):
    """A status change the state machine does not allow."""


# ------------------------------------------------------------------------------ control group
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def control_mask(campaign_id: int, customer_ids, percent: float) -> np.ndarray:
    """True for the customers held out: a hash of (campaign, customer) below `percent` of 10,000 buckets.

    The same pair always lands in the same bucket, so re-runs, recurring refreshes and the
    activities endpoint agree on who is in the control group.
    """
    ids = np.asarray(customer_ids, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _splitmix64((np.uint64(campaign_id) << np.uint64(32)) ^ ids)
    return (h % np.uint64(10_000)) < np.uint64(round(float(percent) * 100))


# ------------------------------------------------------------------------------ variants
def variant_salt(campaign_id: int) -> str:
    """The variants' assignment key: the same customer gets the same variant at every send of the campaign."""
    return f"campaign:{campaign_id}"


def variant_test_salt(campaign_id: int) -> str:
    """The test share's key (independent of the variants' and of the control group's hashes)."""
    return f"campaign:{campaign_id}:test"


def campaign_variants(campaign: Campaign) -> list[CampaignVariant]:
    """The campaign's variants in label order; the first ("A") is the one the others are compared with."""
    return list(CampaignVariant.objects.filter(campaign_id=campaign.pk).order_by("label", "id"))


def variant_shares(variants: list[CampaignVariant]) -> list[float]:
    """The variants' weights made to add up to 1."""
    total = float(sum(v.share for v in variants))
    return [float(v.share) / total for v in variants]


def variant_split(campaign: Campaign, variants: list[CampaignVariant], customer_ids) -> tuple[np.ndarray, np.ndarray]:
    """For treated customers: (variant id, in the test) per customer, vectorised and sticky.

    With a test share, a hash of (campaign, customer) puts that share in the test, where
    ``experiments.stats.assign`` draws each one's variant; the rest wait for the winner (variant id
    -1). Once the winner is sent, new customers (a recurring campaign's later sends) get it directly.
    Without a test share every treated customer is in the test.
    """
    ids = np.asarray(customer_ids, dtype=np.int64)
    vids = np.array([v.pk for v in variants], dtype=np.int64)
    if campaign.winner_id is not None and campaign.winner_sent_at is not None:
        return np.full(len(ids), campaign.winner_id, dtype=np.int64), np.zeros(len(ids), dtype=bool)
    variant = vids[assign(ids, salt=variant_salt(campaign.pk), shares=variant_shares(variants))]
    if campaign.variant_test_percent is None:
        return variant, np.ones(len(ids), dtype=bool)
    in_test = unit_hash(ids, salt=variant_test_salt(campaign.pk)) < float(campaign.variant_test_percent) / 100.0
    return np.where(in_test, variant, -1), in_test


# ------------------------------------------------------------------------------ audience
def audience_queryset(*, segment_ids, excluded_ids=()) -> QuerySet[Customer]:
    """Members of any of `segment_ids`, minus members of any of `excluded_ids`: one SELECT, EXISTS subqueries."""
    segment_ids, excluded_ids = list(segment_ids), list(excluded_ids)
    qs = Customer.objects.filter(Exists(Membership.objects.filter(customer=OuterRef("pk"), segment_id__in=segment_ids)))
    if excluded_ids:
        qs = qs.exclude(Exists(Membership.objects.filter(customer=OuterRef("pk"), segment_id__in=excluded_ids)))
    return qs.order_by()


def audience_preview(
    *, segment_ids, excluded_ids=(), channel: str = Channel.IN_APP, control_percent: float = 10.0
) -> dict:
    """The live audience-size preview of the campaign form."""
    qs = audience_queryset(segment_ids=segment_ids, excluded_ids=excluded_ids)
    agg = qs.aggregate(members=Count("id"), consenting=Count("id", filter=Q(**{CONSENT_FIELDS[channel]: True})))
    control = round(agg["consenting"] * float(control_percent) / 100.0)
    return {
        **agg,
        "no_consent": agg["members"] - agg["consenting"],
        "control_expected": control,
        "treated_expected": agg["consenting"] - control,
    }


def _campaign_audience(campaign: Campaign) -> QuerySet[Customer]:
    return audience_queryset(
        segment_ids=campaign.segments.values_list("id", flat=True),
        excluded_ids=campaign.excluded_segments.values_list("id", flat=True),
    )


def audience_snapshot(*, campaign: Campaign, now: datetime | None = None) -> int:
    """Write a Delivery row for every audience member the campaign has none for yet; return how many.

    The audience is one SQL query; control assignment is a vectorised hash; the rows go in with
    one bulk insert (COPY on PostgreSQL). Customers without consent for the channel get a row
    suppressed with that reason; the control group is drawn among the consenting ones. With
    variants, each treated customer gets one (``variant_split``), or waits for the test's winner.
    """
    now = now or timezone.now()
    consent = CONSENT_FIELDS[campaign.channel]
    qs = (
        _campaign_audience(campaign)
        .exclude(Exists(Delivery.objects.filter(campaign_id=campaign.pk, customer_id=OuterRef("pk"))))
        .order_by("id")
    )
    frame = read_frame(qs, ["id", consent])
    if frame.empty:
        return 0
    ids = frame["id"].to_numpy(dtype=np.int64)
    consenting = frame[consent].to_numpy(dtype=bool)
    control = control_mask(campaign.pk, ids, campaign.control_percent) & consenting
    treated = consenting & ~control
    status = np.where(treated, DeliveryStatus.QUEUED.value, DeliveryStatus.SUPPRESSED.value)
    reason = np.where(control, SuppressReason.CONTROL.value, np.where(consenting, "", SuppressReason.NO_CONSENT.value))
    variant_id = np.zeros(len(ids), dtype=np.int64)
    has_variant = np.zeros(len(ids), dtype=bool)
    in_test = np.zeros(len(ids), dtype=bool)
    variants = campaign_variants(campaign)
    if variants:
        vid, test = variant_split(campaign, variants, ids)
        status = np.where(treated & (vid < 0), DeliveryStatus.WAITING.value, status)  # the rest wait for the winner
        has_variant = treated & (vid >= 0)
        variant_id = np.where(has_variant, vid, 0)
        in_test = treated & test
    variant = pd.arrays.IntegerArray(variant_id, ~has_variant)  # NULL where no variant
    rows = pd.DataFrame(
        {
            "campaign_id": campaign.pk,
            "customer_id": ids,
            "is_control": control,
            "variant_id": variant,
            "variant_test": in_test,
            "status": status,
            "reason": reason,
            "title": "",
            "body": "",
            "items": [[] for _ in range(len(ids))],
            "claim": "",
            "attempts": 0,
            "error": "",
            "created_at": pd.Timestamp(now),
        }
    )
    return bulk_insert(Delivery, rows, json_columns=("items",))


def deliveries_enqueue(*, campaign_id: int, ids=None, queue: str | None = None) -> int:
    """Queue send tasks, one per chunk of consecutive delivery ids, after the current transaction commits."""
    from . import tasks

    if ids is None:
        ids = Delivery.objects.filter(campaign_id=campaign_id, status__in=OPEN).values_list("id", flat=True)
    ids = np.sort(np.asarray(list(ids), dtype=np.int64))
    if not len(ids):
        return 0
    size = max(1, int(settings.CAMPAIGN_CHUNK_SIZE))
    queue = queue if queue is not None else (settings.CAMPAIGN_QUEUE or None)
    ranges = [(int(part[0]), int(part[-1])) for part in np.array_split(ids, int(np.ceil(len(ids) / size)))]

    def send():
        try:
            for first, last in ranges:
                tasks.deliveries_send.apply_async(args=[campaign_id, first, last], queue=queue)
        except Exception:
            if tasks.deliveries_send.app.conf.task_always_eager:
                raise  # in-process sends: their errors are the caller's
            # The launch is committed; the broker is unreachable. campaigns_tick re-queues stranded chunks.
            log.exception("campaign %s: delivery chunks not queued now; the tick will re-queue them", campaign_id)

    transaction.on_commit(send)
    return len(ranges)


# ------------------------------------------------------------------------------ status
# Campaign status → audit action of the move to it.
STATUS_ACTIONS = {
    CampaignStatus.SCHEDULED: CampaignsAuditAction.CAMPAIGN_SCHEDULED,
    CampaignStatus.RUNNING: CampaignsAuditAction.CAMPAIGN_LAUNCHED,
    CampaignStatus.PAUSED: CampaignsAuditAction.CAMPAIGN_PAUSED,
    CampaignStatus.CANCELLED: CampaignsAuditAction.CAMPAIGN_CANCELLED,
    CampaignStatus.COMPLETED: CampaignsAuditAction.CAMPAIGN_COMPLETED,
}


def campaign_transition(
    *, campaign: Campaign, to: str, by=None, note: str = "", now: datetime | None = None, source: str = ""
) -> Campaign:
    """Move a campaign to `to` if the state machine allows it, and record who did it and when
    (in its status history and in the audit log; `source` is admin, api, shell or system)."""
    from accounts.audit import audit_record, shell_actor

    now = now or timezone.now()
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if to not in TRANSITIONS[locked.status]:
            raise TransitionError(f"A {locked.get_status_display().lower()} campaign cannot become {to}.")
        StatusChange.objects.create(
            campaign=locked, from_status=locked.status, to_status=to, by=by, at=now, note=note[:300]
        )
        action = (
            CampaignsAuditAction.CAMPAIGN_RESUMED
            if (locked.status == CampaignStatus.PAUSED and to == CampaignStatus.RUNNING)
            else STATUS_ACTIONS.get(to, CampaignsAuditAction.CAMPAIGN_CHANGED)
        )  # back to draft: a change, with from/to
        source = source or ("admin" if by is not None else "system")
        audit_record(
            action=action,
            actor=by,
            target=locked,
            source=source,
            actor_label=shell_actor() if source == "shell" else "",
            changes={"from": locked.status, "to": to, **({"note": note[:300]} if note else {})},
        )
        locked.status = to
        fields = ["status", "updated_at"]
        if to == CampaignStatus.COMPLETED or to == CampaignStatus.CANCELLED:
            locked.completed_at = now
            fields.append("completed_at")
        locked.save(update_fields=fields)
    campaign.refresh_from_db()
    return campaign


def _check_ready(campaign: Campaign) -> None:
    """Raise TransitionError or TemplateError (naming the template and what is wrong in it) when the
    campaign cannot start: templates saved before the allow-list, or behind the form's back, are
    refused here, before anything is queued."""
    from .rendering import validate_template

    if not campaign.segments.exists():
        raise TransitionError("Choose at least one audience segment.")
    if campaign.kind == CampaignKind.ACTIVITY and campaign.promoted_item_id is None:
        raise TransitionError("An activity promotion needs its activity.")
    for label, source in (("Title template", campaign.title_template), ("Body template", campaign.body_template)):
        try:
            validate_template(source)
        except TemplateError as exc:
            raise TemplateError(f"{label}: {exc}") from exc
    variants = campaign_variants(campaign)
    if len(variants) == 1:
        raise TransitionError("A campaign with variants needs at least two (A and B); delete the single one.")
    for v in variants:
        for label, source in (("title template", v.title_template), ("body template", v.body_template)):
            try:
                validate_template(source)
            except TemplateError as exc:
                raise TemplateError(f"Variant {v.label}, {label}: {exc}") from exc


def campaign_launch(
    *,
    campaign: Campaign,
    by=None,
    now: datetime | None = None,
    queue: str | None = None,
    force_now: bool = False,
    source: str = "",
) -> Campaign:
    """Start a campaign: scheduled for later if its schedule says so, else snapshot and send now."""
    now = now or timezone.now()
    _check_ready(campaign)
    if (
        not force_now
        and campaign.schedule != ScheduleKind.NOW
        and campaign.send_at
        and campaign.send_at > now
        and campaign.status == CampaignStatus.DRAFT
    ):
        return campaign_transition(
            campaign=campaign,
            to=CampaignStatus.SCHEDULED,
            by=by,
            note=f"for {campaign.send_at:%Y-%m-%d %H:%M %Z}",
            now=now,
            source=source,
        )
    with transaction.atomic():
        campaign_transition(campaign=campaign, to=CampaignStatus.RUNNING, by=by, note="launch", now=now, source=source)
        campaign.launched_at = campaign.launched_at or now
        if campaign.is_recurring:
            campaign.next_run_at = now + _period(campaign)
        campaign.save(update_fields=["launched_at", "next_run_at", "updated_at"])
        audience_snapshot(campaign=campaign, now=now)
        deliveries_enqueue(campaign_id=campaign.pk, queue=queue)
    return campaign


def _period(campaign: Campaign) -> timedelta:
    return timedelta(days=7) if campaign.schedule == ScheduleKind.WEEKLY else timedelta(days=1)


def campaign_pause(*, campaign: Campaign, by=None, source: str = "") -> Campaign:
    return campaign_transition(campaign=campaign, to=CampaignStatus.PAUSED, by=by, note="pause", source=source)


def campaign_resume(*, campaign: Campaign, by=None, queue: str | None = None, source: str = "") -> Campaign:
    with transaction.atomic():
        campaign_transition(campaign=campaign, to=CampaignStatus.RUNNING, by=by, note="resume", source=source)
        if campaign.launched_at is None:
            campaign.launched_at = timezone.now()
            campaign.save(update_fields=["launched_at"])
            audience_snapshot(campaign=campaign)
        deliveries_enqueue(campaign_id=campaign.pk, queue=queue)
    return campaign


def campaign_cancel(*, campaign: Campaign, by=None, source: str = "") -> Campaign:
    with transaction.atomic():
        campaign_transition(campaign=campaign, to=CampaignStatus.CANCELLED, by=by, note="cancel", source=source)
        Delivery.objects.filter(
            campaign=campaign, status__in=(DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.WAITING)
        ).update(status=DeliveryStatus.CANCELLED)
    return campaign


# ------------------------------------------------------------------------------ personalisation
def item_url(item: dict) -> str:
    attrs = item.get("attributes") or {}
    if isinstance(attrs, dict) and attrs.get("url"):
        return str(attrs["url"])
    return settings.CAMPAIGN_ITEM_URL.format(
        base=settings.CAMPAIGN_PUBLIC_BASE_URL.rstrip("/"), kind=item["kind"], external_id=item["external_id"]
    )


def _item_dicts(item_ids) -> dict[int, dict]:
    rows = Item.objects.filter(id__in=list(item_ids)).values(
        "id", "kind", "external_id", "title", "category", "price", "attributes"
    )
    out = {}
    for r in rows:
        r["url"] = item_url(r)
        r["price"] = None if r["price"] is None else f"{r['price']:.2f}"
        out[r["id"]] = r
    return out


def unsubscribe_token(*, customer_external_id: str, campaign_id: int | None, customer_id: int) -> str:
    """The signed token of an unsubscribe link: the customer row (id and external id) and the campaign.
    It works for UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS and only on that row (see unsubscribe_record)."""
    return signing.dumps(
        {"c": customer_external_id, "p": customer_id, "k": campaign_id}, salt=UNSUBSCRIBE_SALT, compress=True
    )


def unsubscribe_token_read(token: str) -> dict:
    """The token's claims; raises signing.SignatureExpired past UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS, signing.BadSignature "
    "if forged."""
    days = settings.UNSUBSCRIBE_TOKEN_MAX_AGE_DAYS
    return signing.loads(token, salt=UNSUBSCRIBE_SALT, max_age=timedelta(days=days))


def unsubscribe_url(*, customer_external_id: str, campaign_id: int | None, customer_id: int) -> str:
    from django.urls import reverse

    token = unsubscribe_token(
        customer_external_id=customer_external_id, campaign_id=campaign_id, customer_id=customer_id
    )
    return settings.CAMPAIGN_PUBLIC_BASE_URL.rstrip("/") + reverse("campaigns-unsubscribe", args=[token])


def message_contexts(*, campaign: Campaign, customers: pd.DataFrame) -> dict[int, dict]:
    """Template contexts for many customers at once (columns id, external_id, name, email, time_zone, attributes).

    Plain data only: see rendering.py for the sandbox.
    """
    from recommendations.models import PopularItem
    from recommendations.selectors import top_items_for

    ids = customers["id"].astype("int64").tolist()
    profiles = {
        r.pop("customer_id"): r
        for r in Profile.objects.filter(_id_among(Profile, "customer", ids)).values("customer_id", *PROFILE_FIELDS)
    }
    per_customer: dict[int, list[int]] = {}
    fallback: list[int] = []
    n = campaign.recommendation_count
    if n:
        top = top_items_for(ids, kind=campaign.recommendation_kind, limit=n)
        for cid, group in top.groupby("customer_id", sort=False):
            per_customer[int(cid)] = group.sort_values("rank")["item_id"].astype(int).tolist()
        if len(per_customer) < len(ids):
            fallback = list(
                PopularItem.objects.filter(
                    run__is_active=True, run__channel="", kind=campaign.recommendation_kind, segment__isnull=True
                )
                .order_by("rank")
                .values_list("item_id", flat=True)[:n]
            )
    wanted = {i for v in per_customer.values() for i in v} | set(fallback)
    if campaign.promoted_item_id:
        wanted.add(campaign.promoted_item_id)
    items = _item_dicts(wanted)
    activity = items.get(campaign.promoted_item_id) if campaign.promoted_item_id else None
    camp = freeze({"id": campaign.pk, "name": campaign.name, "goal": campaign.goal})
    frozen_activity = (
        freeze({k: activity[k] for k in ("external_id", "kind", "title", "category", "price", "url")})
        if activity
        else None
    )
    out = {}
    for rec in _records(customers):
        cid = int(rec["id"])
        name = rec.get("name") or ""
        chosen = [items[i] for i in per_customer.get(cid, fallback) if i in items]
        attrs = rec.get("attributes") or {}
        out[cid] = {
            "customer": {
                "external_id": rec["external_id"],
                "name": name or rec["external_id"],
                "first_name": (name.split() or [rec["external_id"]])[0],
                "email": rec.get("email") or "",
                "time_zone": rec.get("time_zone") or "UTC",
                "attributes": attrs if isinstance(attrs, dict) else {},
                "profile": profiles.get(cid, {}),
            },
            "items": [
                {k: it[k] for k in ("external_id", "kind", "title", "category", "price", "url")} for it in chosen
            ],
            "item_ids": [it["id"] for it in chosen] + ([activity["id"]] if activity else []),
            "activity": frozen_activity,
            "campaign": camp,
        }
        if campaign.channel == Channel.EMAIL:
            out[cid]["unsubscribe_url"] = unsubscribe_url(
                customer_external_id=rec["external_id"], campaign_id=campaign.pk, customer_id=cid
            )
    return out


def _render_pair(campaign: Campaign, context: dict, variant: CampaignVariant | None = None) -> tuple[str, str]:
    """The title and body for one context: the variant's templates where it has them, else the campaign's."""
    ctx = freeze({k: v for k, v in context.items() if k != "item_ids"})  # once for both templates
    title = (variant.title_template if variant is not None else "") or campaign.title_template
    body = (variant.body_template if variant is not None else "") or campaign.body_template
    return render(title, ctx).strip()[:500], render(body, ctx).strip()


def message_preview(*, campaign: Campaign, customer: Customer, variant: CampaignVariant | None = None) -> dict:
    """The message as `customer` would get it (in `variant`, if given): title, body and its context."""
    frame = pd.DataFrame(
        [
            {
                "id": customer.pk,
                "external_id": customer.external_id,
                "name": customer.name,
                "email": customer.email,
                "time_zone": customer.time_zone,
                "attributes": customer.attributes,
            }
        ]
    )
    context = message_contexts(campaign=campaign, customers=frame)[customer.pk]
    title, body = _render_pair(campaign, context, variant)
    return {
        "customer": customer.external_id,
        "title": title,
        "body": body,
        "context": {k: v for k, v in context.items() if k != "item_ids"},
    }


def campaign_send_test(*, campaign: Campaign, user, customer: Customer) -> dict:
    """Email the message rendered for `customer` to the operator's own address (never to the customer)."""
    from .channels import EmailChannel

    if not user.email:
        raise ValueError("Your user has no email address to send the test to.")
    preview = message_preview(campaign=campaign, customer=customer)
    msg = Message(
        delivery_id=0,
        provider_key=f"test-{campaign.pk}-{uuid.uuid4().hex[:12]}",
        customer_external_id=customer.external_id,
        email=user.email,
        title="[TEST] " + preview["title"],
        body=preview["body"],
        campaign_id=campaign.pk,
    )
    outcome = EmailChannel().send([msg])[0]
    if not outcome.ok:
        raise ValueError(f"The test could not be sent: {outcome.error}")
    return preview


# ------------------------------------------------------------------------------ sending
def _in_window(local: datetime, start, end) -> bool:
    t = local.time()
    if start is None or end is None or start == end:
        return True
    return start <= t < end if start < end else (t >= start or t < end)  # a window across midnight


def _next_window_start(now: datetime, tz: str, start) -> datetime:
    zone = _zone(tz)
    local = now.astimezone(zone)
    candidate = local.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate = (local + timedelta(days=1)).replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    return candidate.astimezone(ZoneInfo("UTC"))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except Exception:
        return ZoneInfo("UTC")


def _frequency_cap(campaign: Campaign) -> tuple[int, int]:
    count = campaign.frequency_cap_count
    count = int(settings.CAMPAIGN_FREQUENCY_CAP_COUNT) if count is None else count
    days = campaign.frequency_cap_days
    days = int(settings.CAMPAIGN_FREQUENCY_CAP_DAYS) if days is None else days
    return count, days


def _records(frame: pd.DataFrame) -> list[dict]:
    """`frame.to_dict("records")` with the same Python values (numbers, text, None, the JSON
    columns' lists and dicts), built column by column: pandas boxes every cell on its own."""
    columns = [frame[c].tolist() for c in frame.columns]
    return [dict(zip(frame.columns, row, strict=True)) for row in zip(*columns, strict=True)]


def _id_among(model, field: str, ids):
    """A filter: `model.field` is one of `ids`. On PostgreSQL the ids travel as one array parameter
    (`= ANY(%s::bigint[])`): a chunk's thousand ids as an IN list cost more to build and to parse
    than the statement takes to run."""
    ids = [int(i) for i in ids]
    if connection.vendor != "postgresql":
        return Q(**{f"{field}__in": ids})
    column = model._meta.get_field(field).column
    qn = connection.ops.quote_name
    return RawSQL(
        f"{qn(model._meta.db_table)}.{qn(column)} = ANY(%s::bigint[])",
        ["{" + ",".join(map(str, ids)) + "}"],
        output_field=BooleanField(),
    )


def _update_rows(frame: pd.DataFrame, columns: list[str], *, json_columns: tuple[str, ...] = ()) -> None:
    """Set `columns` of the Delivery rows whose ids are in frame["id"], in one statement on PostgreSQL."""
    if frame.empty:
        return
    if connection.vendor == "postgresql":
        import json

        table = Delivery._meta.db_table
        temp = f"_dset_{uuid.uuid4().hex[:8]}"
        cols = ["id", *columns]
        quoted = ", ".join(f'"{c}"' for c in cols)
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS SELECT {quoted} FROM {table} WITH NO DATA")
            with cur.cursor.copy(f"COPY {temp} ({quoted}) FROM STDIN") as copy:
                for row in frame[cols].itertuples(index=False, name=None):
                    copy.write_row(
                        [
                            json.dumps(v) if c in json_columns else (None if v is pd.NaT else v)
                            for c, v in zip(cols, row, strict=False)
                        ]
                    )
            sets = ", ".join(f'"{c}" = t."{c}"' for c in columns)
            cur.execute(f"UPDATE {table} d SET {sets} FROM {temp} t WHERE d.id = t.id")
            cur.execute(f"DROP TABLE {temp}")
    else:
        objs = [
            Delivery(**{k: (None if v is pd.NaT else v) for k, v in rec.items()})
            for rec in frame[["id", *columns]].to_dict("records")
        ]
        Delivery.objects.bulk_update(objs, columns, batch_size=500)


def _claim(
    *, campaign: Campaign, first_id: int, last_id: int, attempt: str, now: datetime, send: bool = False
) -> pd.DataFrame:
    """Claim the chunk's sendable rows for this attempt; suppress or defer the others. Returns the claimed rows.

    With `send` (a channel whose message is the row itself, in-app) the claimed rows are written
    sent at `now` by the claim's own UPDATE: there is nothing to hand over, so nothing is left
    half-sent if the worker dies."""
    consent = CONSENT_FIELDS[campaign.channel]
    stale = now - timedelta(seconds=float(settings.CAMPAIGN_CLAIM_TIMEOUT_SECONDS))
    claimable = (
        Q(status=DeliveryStatus.QUEUED)
        | Q(status=DeliveryStatus.DEFERRED, due_at__lte=now)
        | Q(status=DeliveryStatus.SENDING, claim=attempt)
        | Q(status=DeliveryStatus.SENDING, claimed_at__lt=stale)
    )
    with transaction.atomic():
        base = Delivery.objects.filter(campaign_id=campaign.pk, id__gte=first_id, id__lte=last_id).filter(claimable)
        # Locks the chunk's rows (and reads them with their customers' columns in the same
        # statement), then their customers in id order: a concurrent chunk of another campaign
        # waits here, so the frequency cap counts its claims and is never exceeded.
        fields = [
            "id",
            "customer_id",
            "variant_id",
            "status",
            "title",
            "body",
            "items",
            "attempts",
            "customer__external_id",
            "customer__name",
            "customer__email",
            "customer__time_zone",
            "customer__attributes",
            f"customer__{consent}",
        ]
        records = list(base.select_for_update(of=("self",)).order_by("id").values_list(*fields))
        if not records:
            return pd.DataFrame()
        rows = pd.DataFrame.from_records(records, columns=fields)
        ids = rows["id"].tolist()
        list(
            Customer.objects.select_for_update()
            .filter(_id_among(Customer, "id", rows["customer_id"]))
            .order_by("id")
            .values_list("id", flat=True)
        )
        rows = rows.rename(columns=lambda c: c.replace("customer__", "c_"))
        rows["new_status"] = DeliveryStatus.SENDING.value
        rows["reason"] = ""
        rows["due_at"] = pd.Series([None] * len(rows), index=rows.index, dtype=object)
        # 1. consent (it may have been withdrawn since launch) and an address
        no_consent = ~rows[f"c_{consent}"].astype(bool)
        rows.loc[no_consent, ["new_status", "reason"]] = [
            DeliveryStatus.SUPPRESSED.value,
            SuppressReason.NO_CONSENT.value,
        ]
        if campaign.channel == Channel.EMAIL:
            no_addr = (rows["c_email"].fillna("") == "") & (rows["new_status"] == DeliveryStatus.SENDING)
            rows.loc[no_addr, ["new_status", "reason"]] = [
                DeliveryStatus.SUPPRESSED.value,
                SuppressReason.NO_ADDRESS.value,
            ]
        if campaign.ends_at and campaign.ends_at <= now:
            live = rows["new_status"] == DeliveryStatus.SENDING
            rows.loc[live, ["new_status", "reason"]] = [DeliveryStatus.SUPPRESSED.value, SuppressReason.EXPIRED.value]
        # 2. quiet hours: deferred to the start of the customer's next window, never dropped
        if campaign.window_start is not None and campaign.window_end is not None:
            for tz, idx in rows[rows["new_status"] == DeliveryStatus.SENDING].groupby("c_time_zone").groups.items():
                if not _in_window(now.astimezone(_zone(tz)), campaign.window_start, campaign.window_end):
                    rows.loc[idx, "new_status"] = DeliveryStatus.DEFERRED.value
                    rows.loc[idx, "due_at"] = _next_window_start(now, tz, campaign.window_start)
        # 3. the frequency cap, across all campaigns and channels (claims in flight count)
        cap, days = _frequency_cap(campaign)
        live = rows["new_status"] == DeliveryStatus.SENDING
        if live.any():
            counts = dict(
                Delivery.objects.filter(
                    _id_among(Delivery, "customer", rows.loc[live, "customer_id"]),
                    status__in=(DeliveryStatus.SENDING, DeliveryStatus.SENT),
                    claimed_at__gte=now - timedelta(days=days),
                )
                .exclude(_id_among(Delivery, "id", ids))
                .values("customer_id")
                .annotate(n=Count("id"))
                .values_list("customer_id", "n")
            )
            over = live & (rows["customer_id"].map(counts).fillna(0) >= cap)
            rows.loc[over, ["new_status", "reason"]] = [
                DeliveryStatus.SUPPRESSED.value,
                SuppressReason.FREQUENCY_CAP.value,
            ]
        # 4. render what has not been rendered by an earlier attempt; a message that cannot be
        #    rendered (a sandbox limit, a filter failing on this customer's data) fails its own
        #    delivery with the reason, and the rest of the chunk goes on
        live = rows["new_status"] == DeliveryStatus.SENDING
        todo = live & (rows["title"] == "")
        rows["error"] = ""
        if todo.any():
            customers = rows.loc[
                todo, ["customer_id", "c_external_id", "c_name", "c_email", "c_time_zone", "c_attributes"]
            ]
            customers.columns = ["id", "external_id", "name", "email", "time_zone", "attributes"]
            contexts = message_contexts(campaign=campaign, customers=customers)
            variants = {v.pk: v for v in campaign_variants(campaign)}
            variant_of = dict(zip(rows.loc[todo, "customer_id"], rows.loc[todo, "variant_id"], strict=True))
            rendered: dict[int, tuple] = {}
            failures: dict[int, str] = {}
            for cid, ctx in contexts.items():
                vid = variant_of.get(cid)
                variant = variants.get(int(vid)) if vid is not None and not pd.isna(vid) else None
                try:
                    rendered[cid] = (*_render_pair(campaign, ctx, variant), ctx["item_ids"])
                except TemplateError as exc:
                    failures[cid] = str(exc)[:500]
            if failures:
                # the reasons are in the rows; they may quote a customer's data, which logs never carry
                log.warning(
                    "campaign %s: %d message(s) could not be rendered; their deliveries failed",
                    campaign.pk,
                    len(failures),
                )
                bad = todo & rows["customer_id"].isin(list(failures))
                rows.loc[bad, "new_status"] = DeliveryStatus.FAILED.value
                rows.loc[bad, "error"] = rows.loc[bad, "customer_id"].map(failures)
                todo &= ~bad
                live = rows["new_status"] == DeliveryStatus.SENDING
            rows.loc[todo, "title"] = rows.loc[todo, "customer_id"].map(lambda c: rendered[c][0])
            rows.loc[todo, "body"] = rows.loc[todo, "customer_id"].map(lambda c: rendered[c][1])
            rows.loc[todo, "items"] = rows.loc[todo, "customer_id"].map(lambda c: rendered[c][2])
        # 5. write every decision at once
        rows["provider_key"] = [f"campaign-{campaign.pk}-delivery-{i}" for i in rows["id"]]
        rows["claim"] = np.where(live, attempt, "")
        rows["claimed_at"] = pd.Series([now if v else None for v in live], dtype=object)
        rows["status"] = rows["new_status"]
        rows["deferred_until"] = rows["due_at"]
        deferred = rows["status"] == DeliveryStatus.DEFERRED
        sending = rows[live].copy()
        if len(sending):
            sending["attempts"] = sending["attempts"] + 1  # the rows are locked: nobody else counts
            columns = ["status", "claim", "claimed_at", "provider_key", "title", "body", "items", "attempts"]
            if send:
                sending["status"] = DeliveryStatus.SENT.value
                sending["sent_at"] = sending["claimed_at"]
                columns.append("sent_at")
            _update_rows(sending[["id", *columns]], columns, json_columns=("items",))
        if deferred.any():
            _update_rows(
                rows.loc[deferred, ["id", "status", "due_at", "deferred_until"]], ["status", "due_at", "deferred_until"]
            )
        suppressed = rows["status"] == DeliveryStatus.SUPPRESSED
        if suppressed.any():
            _update_rows(rows.loc[suppressed, ["id", "status", "reason"]], ["status", "reason"])
        failed = rows["status"] == DeliveryStatus.FAILED
        if failed.any():
            _update_rows(rows.loc[failed, ["id", "status", "error"]], ["status", "error"])
    return sending


def deliveries_send(
    *, campaign_id: int, first_id: int, last_id: int, attempt: str = "", now: datetime | None = None
) -> dict:
    """Send the campaign's deliveries with ids in [first_id, last_id]; safe to run any number of times."""
    started = time.monotonic()
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None or campaign.status != CampaignStatus.RUNNING:
        return {"skipped": campaign.status if campaign else "missing"}
    attempt = attempt or uuid.uuid4().hex
    now = now or timezone.now()
    channel = channel_for(campaign.channel)
    delay = float(settings.CAMPAIGN_SEND_DELAY_SECONDS)
    sent_on_claim = getattr(channel, "sent_on_claim", False) and not delay
    claimed = _claim(
        campaign=campaign, first_id=first_id, last_id=last_id, attempt=attempt, now=now, send=sent_on_claim
    )
    counts = {"claimed": len(claimed), "sent": 0, "failed": 0}
    if claimed.empty:
        return counts
    batch = max(1, int(settings.CAMPAIGN_SEND_BATCH))
    records = _records(claimed)
    if sent_on_claim:  # in-app: the claim wrote them sent (stored for the inbox, not yet delivered)
        _after_send(campaign, records, delivered=set(), at=now)
        counts["sent"] = len(records)
        counts["seconds"] = round(time.monotonic() - started, 3)
        return counts
    for start in range(0, len(records), batch):
        part = records[start : start + batch]
        messages = [
            Message(
                delivery_id=r["id"],
                provider_key=r["provider_key"],
                customer_external_id=r["c_external_id"],
                email=r["c_email"] or "",
                title=r["title"],
                body=r["body"],
                campaign_id=campaign.pk,
                unsubscribe_url=unsubscribe_url(
                    customer_external_id=r["c_external_id"], campaign_id=campaign.pk, customer_id=int(r["customer_id"])
                )
                if campaign.channel == Channel.EMAIL
                else "",
                data={"items": list(r["items"] or []), "delivery": r["id"]},
            )
            for r in part
        ]
        if delay:
            time.sleep(delay * len(messages))
        outcomes = channel.send(messages)
        sent_at = timezone.now()
        ok_delivered = [m.delivery_id for m, o in zip(messages, outcomes, strict=False) if o.ok and o.delivered]
        ok_stored = [m.delivery_id for m, o in zip(messages, outcomes, strict=False) if o.ok and not o.delivered]
        mine = Delivery.objects.filter(status=DeliveryStatus.SENDING, claim=attempt)
        if ok_delivered:
            mine.filter(_id_among(Delivery, "id", ok_delivered)).update(
                status=DeliveryStatus.SENT, sent_at=sent_at, delivered_at=sent_at
            )
        if ok_stored:
            mine.filter(_id_among(Delivery, "id", ok_stored)).update(status=DeliveryStatus.SENT, sent_at=sent_at)
        errors: dict[str, list[int]] = {}
        for m, o in zip(messages, outcomes, strict=False):
            if not o.ok:
                errors.setdefault(o.error[:500], []).append(m.delivery_id)
        for error, ids in errors.items():
            mine.filter(_id_among(Delivery, "id", ids)).update(status=DeliveryStatus.FAILED, error=error)
        counts["sent"] += len(ok_delivered) + len(ok_stored)
        counts["failed"] += sum(len(v) for v in errors.values())
        by_id = {r["id"]: r for r in part}
        _after_send(campaign, [by_id[i] for i in ok_delivered + ok_stored], delivered=set(ok_delivered), at=sent_at)
    counts["seconds"] = round(time.monotonic() - started, 3)
    return counts


def _after_send(campaign: Campaign, rows: list[dict], *, delivered: set[int], at: datetime) -> None:
    """The message counts as seen for its items; deliveries become behaviour events where a type exists."""
    if not rows:
        return
    pairs = [(r["customer_id"], i) for r in rows for i in (r["items"] or [])]
    if pairs:
        try:
            from recommendations.services import impressions_record

            impressions_record(
                customer_ids=[p[0] for p in pairs],
                item_ids=[p[1] for p in pairs],
                shown_at=at,
                source=f"campaign:{campaign.pk}",
            )
        except Exception:  # a soft signal: never fail a send for it
            log.exception("impressions for campaign %s not recorded", campaign.pk)
    delivered_rows = [r for r in rows if r["id"] in delivered]
    if delivered_rows:
        _record_events(
            campaign,
            "delivered",
            [(r["id"], r["c_external_id"], (r["items"] or [None])[0]) for r in delivered_rows],
            at,
        )


def _record_events(campaign: Campaign, what: str, rows: list[tuple[int, str, int | None]], at: datetime) -> int:
    """Delivered / opened / clicked as behaviour events through profiles' ingestion (idempotent by external id)."""
    etype = (settings.CAMPAIGN_EVENT_TYPES or {}).get(what)
    if not etype or not rows:
        return 0
    items = _item_dicts({i for _, _, i in rows if i})
    frame = pd.DataFrame(
        [
            {
                "external_id": f"campaign:{campaign.pk}:delivery:{did}:{what}",
                "customer": ext,
                "item_kind": items[i]["kind"] if i in items else None,
                "item": items[i]["external_id"] if i in items else None,
                "type": etype,
                "value": None,
                "amount": None,
                "occurred_at": at,
                "context": {"campaign": campaign.pk, "delivery": did, "channel": campaign.channel, "interaction": what},
            }
            for did, ext, i in rows
        ]
    )
    result = events_ingest(rows=frame, all_or_nothing=False, create_unknown=False)
    if result.errors:
        log.info(
            "campaign %s: %d %s event(s) not recorded: %s", campaign.pk, len(result.errors), what, result.errors[0]
        )
    return result.created


# ------------------------------------------------------------------------------ tracking
def delivery_track(*, delivery: Delivery, what: str, item: Item | None = None, now: datetime | None = None) -> Delivery:
    """The frontend reports an in-app message opened or clicked (a click implies an open)."""
    now = now or timezone.now()
    if delivery.status != DeliveryStatus.SENT:
        raise ValueError("Only a sent message can be opened or clicked.")
    updates = {}
    if delivery.delivered_at is None:
        updates["delivered_at"] = now
    if delivery.opened_at is None:
        updates["opened_at"] = now
    if what == "clicked" and delivery.clicked_at is None:
        updates["clicked_at"] = now
    if updates:
        Delivery.objects.filter(pk=delivery.pk).update(**updates)
        for k, v in updates.items():
            setattr(delivery, k, v)
    if item is None:
        first = (delivery.items or [None])[0]
        item_id = delivery.campaign.promoted_item_id or first
    else:
        item_id = item.pk
    ext = delivery.customer.external_id
    if "opened_at" in updates:
        _record_events(delivery.campaign, "opened", [(delivery.pk, ext, item_id)], now)
    if what == "clicked":
        _record_events(delivery.campaign, "clicked", [(delivery.pk, ext, item_id)], now)
    return delivery


def inbox_record_delivered(*, delivery: Delivery, now: datetime | None = None) -> datetime:
    """The customer's client showed this in-app message: stamp it delivered once (a repeat changes nothing)."""
    if delivery.status != DeliveryStatus.SENT or delivery.campaign.channel != "in_app":
        raise ValueError("Only a sent in-app message can be delivered.")
    inbox_mark_delivered(delivery_ids=[delivery.pk], now=now)
    return Delivery.objects.values_list("delivered_at", flat=True).get(pk=delivery.pk)


def inbox_mark_delivered(*, delivery_ids: list[int], now: datetime | None = None) -> int:
    """The customer's client showed these in-app messages: they are delivered (each once)."""
    now = now or timezone.now()
    fresh = list(
        Delivery.objects.filter(id__in=delivery_ids, delivered_at__isnull=True).values_list(
            "id", "campaign_id", "customer__external_id", "items"
        )
    )
    if not fresh:
        return 0
    Delivery.objects.filter(id__in=[f[0] for f in fresh], delivered_at__isnull=True).update(delivered_at=now)
    for cid in {f[1] for f in fresh}:
        campaign = Campaign.objects.get(pk=cid)
        _record_events(
            campaign,
            "delivered",
            [(f[0], f[2], campaign.promoted_item_id or (f[3] or [None])[0]) for f in fresh if f[1] == cid],
            now,
        )
    return len(fresh)


def unsubscribe_record(*, token: str) -> bool:
    """Record the opt-out a link in an email carries; True when a customer's consent changed.

    The link acts only on the customer row it was made for, and never creates one: a forgotten
    customer (renamed row), one created again under the same external id (a new row) or an unknown
    id get the same "you are unsubscribed" answer and nothing is written. Tokens from before links
    carried the row id act on the customer holding the external id, if any."""
    from profiles.services import customer_consent_set

    data = unsubscribe_token_read(token)
    rows = Customer.objects.filter(external_id=str(data["c"]))
    if data.get("p") is not None:
        rows = rows.filter(pk=data["p"])
    customer = rows.first()
    if customer is None:
        return False
    return bool(customer_consent_set(customer=customer, source="unsubscribe", consent_email=False))


# ------------------------------------------------------------------------------ the schedule
def campaigns_tick(*, now: datetime | None = None, queue: str | None = None) -> dict:
    """What the clock moves: scheduled launches, recurring refreshes, deferred sends coming due,
    stranded chunks re-queued, campaigns past their end or fully sent completed."""
    now = now or timezone.now()
    out = {"launched": 0, "refused": 0, "refreshed": 0, "requeued": 0, "completed": 0}
    for campaign in Campaign.objects.filter(status=CampaignStatus.SCHEDULED, send_at__lte=now):
        try:
            campaign_launch(campaign=campaign, now=now, queue=queue, force_now=True)
        except (TemplateError, TransitionError) as exc:
            # It cannot start (a template saved before the allow-list, no segment left): back to
            # draft with the reason in its history, instead of failing this tick and every next one.
            log.warning("campaign %s not launched: %s", campaign.pk, exc)
            try:
                campaign_transition(campaign=campaign, to=CampaignStatus.DRAFT, note=f"launch refused: {exc}", now=now)
            except TransitionError:
                pass  # no longer scheduled (changed meanwhile): nothing to undo
            out["refused"] += 1
            continue
        out["launched"] += 1
    for campaign in Campaign.objects.filter(status=CampaignStatus.RUNNING):
        if campaign.ends_at and campaign.ends_at <= now:
            with transaction.atomic():
                Delivery.objects.filter(
                    campaign=campaign,
                    status__in=(DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.WAITING),
                ).update(status=DeliveryStatus.SUPPRESSED, reason=SuppressReason.EXPIRED)
                campaign_transition(campaign=campaign, to=CampaignStatus.COMPLETED, note="ended", now=now)
            out["completed"] += 1
            continue
        if campaign.is_recurring and campaign.next_run_at and campaign.next_run_at <= now:
            with transaction.atomic():
                added = audience_snapshot(campaign=campaign, now=now)
                campaign.next_run_at = max(campaign.next_run_at + _period(campaign), now)
                campaign.save(update_fields=["next_run_at", "updated_at"])
            out["refreshed"] += added
        stale = now - timedelta(seconds=float(settings.CAMPAIGN_CLAIM_TIMEOUT_SECONDS))
        pending = (
            Delivery.objects.filter(campaign=campaign)
            .filter(
                Q(status=DeliveryStatus.QUEUED)
                | Q(status=DeliveryStatus.DEFERRED, due_at__lte=now)
                | Q(status=DeliveryStatus.SENDING, claimed_at__lt=stale)
            )
            .values_list("id", flat=True)
        )
        ids = list(pending)
        if ids:
            out["requeued"] += deliveries_enqueue(campaign_id=campaign.pk, ids=ids, queue=queue)
        elif (
            not campaign.is_recurring
            and not Delivery.objects.filter(campaign=campaign, status__in=(*OPEN, DeliveryStatus.WAITING)).exists()
        ):
            campaign_transition(campaign=campaign, to=CampaignStatus.COMPLETED, note="all sent", now=now)
            out["completed"] += 1
    return out


# ------------------------------------------------------------------------------ attribution
def campaigns_attribute(*, now: datetime | None = None, campaign_ids: list[int] | None = None) -> dict:
    """Attribute goal events to deliveries: a treated customer's first goal event within the window
    after the delivery, a control customer's within the window after the launch; revenue is the
    sum of the goal events' amounts in that window. Recomputed from the events each run (idempotent)."""
    now = now or timezone.now()
    qs = Campaign.objects.filter(launched_at__isnull=False)
    if campaign_ids is not None:
        qs = qs.filter(pk__in=campaign_ids)
    else:
        qs = qs.filter(launched_at__gte=now - timedelta(days=int(settings.CAMPAIGN_ATTRIBUTION_LOOKBACK_DAYS)))
    out = {}
    for campaign in qs:
        window = timedelta(days=campaign.attribution_days)
        goal = Event.objects.filter(customer_id=OuterRef("customer_id"), type=campaign.goal_event_type)
        if campaign.goal_item_id:
            goal = goal.filter(item_id=campaign.goal_item_id)
        if campaign.goal_category:
            goal = goal.filter(item__category=campaign.goal_category)
        with transaction.atomic():
            start = OuterRef("sent_at")
            end = ExpressionWrapper(OuterRef("sent_at") + window, output_field=DateTimeField())
            treated_goal = goal.filter(occurred_at__gte=start, occurred_at__lte=end)
            treated = Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.SENT)
            n_t = treated.update(
                converted_at=Subquery(treated_goal.order_by("occurred_at").values("occurred_at")[:1]),
                revenue=Subquery(
                    treated_goal.order_by().values("customer_id").annotate(s=Sum("amount")).values("s")[:1]
                ),
            )
            control_goal = goal.filter(
                occurred_at__gte=campaign.launched_at, occurred_at__lte=campaign.launched_at + window
            )
            control = Delivery.objects.filter(campaign=campaign, is_control=True)
            n_c = control.update(
                converted_at=Subquery(control_goal.order_by("occurred_at").values("occurred_at")[:1]),
                revenue=Subquery(
                    control_goal.order_by().values("customer_id").annotate(s=Sum("amount")).values("s")[:1]
                ),
            )
            Campaign.objects.filter(pk=campaign.pk).update(attributed_at=now)
        out[campaign.pk] = {"treated": n_t, "control": n_c}
    return out


# ------------------------------------------------------------------------------ the variants' winner
def campaign_winner_send(*, campaign: Campaign, now: datetime | None = None, queue: str | None = None) -> dict | None:
    """Decide a campaign's variants test once its window has passed, and send the winner to the rest.

    The rest (deliveries waiting for the winner) get the winner the sequential test names, or variant
    A when it names none (a sample ratio mismatch included). Under the campaign's row lock and only
    once (``winner_sent_at``): a second run, concurrent or later, changes nothing and returns None.
    Recorded in the status history and the audit log; the sends are queued after the commit.
    """
    from accounts.audit import audit_record

    from .selectors import variant_report

    now = now or timezone.now()
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if (
            locked.winner_sent_at is not None
            or locked.status != CampaignStatus.RUNNING
            or locked.variant_test_percent is None
            or locked.launched_at is None
            or locked.launched_at + timedelta(hours=locked.variant_test_hours) > now
        ):
            return None
        variants = campaign_variants(locked)
        if len(variants) < 2:
            return None
        campaigns_attribute(now=now, campaign_ids=[locked.pk])  # the conversions as of now
        report = variant_report(locked)
        by_label = {v.label: v for v in variants}
        by_test = report["winner"] is not None
        winner = by_label[report["winner"]] if by_test else variants[0]
        hours = locked.variant_test_hours
        window = f"{hours} h"
        if by_test:
            verdict = f"{winner.label} won after {window}: the rest got {winner.label}. {report['text']}"
        else:
            verdict = f"No winner after {window}: the rest got {winner.label}. {report['text']}"
        verdict = verdict[:300]
        rest = Delivery.objects.filter(campaign=locked, status=DeliveryStatus.WAITING).update(
            status=DeliveryStatus.QUEUED, variant=winner
        )
        locked.winner = winner
        locked.winner_sent_at = now
        locked.winner_verdict = verdict
        locked.save(update_fields=["winner", "winner_sent_at", "winner_verdict", "updated_at"])
        StatusChange.objects.create(
            campaign=locked, from_status=locked.status, to_status=locked.status, at=now, note=verdict
        )
        audit_record(
            action=CampaignsAuditAction.CAMPAIGN_WINNER_SENT,
            actor=None,
            target=locked,
            source="system",
            changes={"winner": winner.label, "by_test": by_test, "customers": rest, "verdict": report["verdict"]},
        )
        deliveries_enqueue(campaign_id=locked.pk, queue=queue)
    campaign.refresh_from_db()
    return {"campaign": locked.pk, "winner": winner.label, "by_test": by_test, "customers": rest}


def campaigns_decide_winners(*, now: datetime | None = None, queue: str | None = None) -> dict:
    """The beat's look for variants tests whose window has passed: each decided and its winner sent once."""
    now = now or timezone.now()
    due = Campaign.objects.filter(
        status=CampaignStatus.RUNNING,
        variant_test_percent__isnull=False,
        winner_sent_at__isnull=True,
        launched_at__isnull=False,
    ).order_by("launched_at", "pk")
    out = {"decided": 0, "by_test": 0, "customers": 0}
    for campaign in due:
        if campaign.launched_at + timedelta(hours=campaign.variant_test_hours) > now:
            continue
        result = campaign_winner_send(campaign=campaign, now=now, queue=queue)
        if result is not None:
            out["decided"] += 1
            out["by_test"] += int(result["by_test"])
            out["customers"] += result["customers"]
    return out
