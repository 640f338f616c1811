"""A run's figures as operators read them: status badges, step progress in words, and the counts a
step recorded as rows of a table (a label in words, a formatted value), never as JSON.

The pipeline knows no step (pipeline/steps.py), so the labels below are keyed by the names the
steps use in their counts; a key without a label reads as words (``customers_cold`` → "Customers
cold") and its value is formatted by its type. The admin pages of runs (pipeline runs, recommender
runs, clustering runs) and the run page's JSON view all build their tables here, so the page
rendered by the server and the page updated by its script show the same words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass

from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import format_html

from common import display

from .models import PipelineRun, PipelineStep, RunStatus

# Badge colours (background, text) by status.
STATUS_COLOURS = {
    RunStatus.QUEUED: ("#eceff1", "#37474f"),
    RunStatus.RUNNING: ("#e3f2fd", "#0d47a1"),
    RunStatus.SUCCEEDED: ("#e8f5e9", "#1b5e20"),
    RunStatus.FAILED: ("#ffebee", "#b71c1c"),
    RunStatus.SKIPPED: ("#f5f5f5", "#616161"),
    RunStatus.STALE: ("#fff8e1", "#8d6e00"),
}
WAITING = "waiting"
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
_BADGE_STYLE = "display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px;"


def status_label(status: str) -> str:
    if status == WAITING:
        return "Waiting"
    if status == RunStatus.STALE:
        return "Stale (a newer run won)"
    return RunStatus(status).label if status in RunStatus.values else display.words(status)


def status_colours(status: str) -> tuple[str, str]:
    return STATUS_COLOURS.get(status, STATUS_COLOURS[RunStatus.QUEUED])


def status_badge(status: str, label: str | None = None):
    """A coloured badge for a run's or a step's status (escaped HTML)."""
    background, colour = status_colours(status)
    return format_html(
        '<span class="run-badge" data-status="{}" style="{}background:{};color:{}">{}</span>',
        status,
        _BADGE_STYLE,
        background,
        colour,
        label or status_label(status),
    )


def step_label(name: str) -> str:
    return display.words(name)


def trigger_text(run: PipelineRun) -> str:
    """Who or what started a run: "demo (in the admin)", "the schedule", "a shell command"."""
    how = {
        "admin": "in the admin",
        "schedule": "the schedule",
        "shell": "a shell command",
        "api": "the API",
    }.get(run.trigger, display.words(run.trigger))
    if run.requested_by_id and run.requested_by is not None:
        return f"{run.requested_by.get_username()} ({how})"
    return how[:1].upper() + how[1:]


# --- counts as rows ------------------------------------------------------------------------------

HIDDEN = {"watermark", "max_event_id", "run", "clustering_run", "status", "_status", "reason_code"}
# Mappings whose keys are names operators gave (rule segments by name): shown as written.
NAMED = {
    ("rules", "sizes"),
    ("rules", "errors"),
    ("rules", "refreshed_for_a_few"),
    ("model", "components"),
    # the models' parameters under the names the papers give them (r, alpha, a, b; p, q, v)
    ("predictions", "bgnbd"),
    ("predictions", "gamma_gamma"),
}
# Mappings whose keys are codes read as words in the order given (event types by weight).
WORDED = {"weights", "basis"}

LABELS: dict[str, str] = {
    # what a step's run was (links), first
    "run": "Recommender run",
    "clustering_run": "Clustering run",
    "algorithm": "Model",
    "params": "Parameters",
    # profiles
    "customers": "Customers",
    "profiles_written": "Profiles written",
    "events_read": "Events read",
    "incremental": "Only customers with new events",
    "events_30d": "Events in the last 30 days",
    "customers_active_30d": "Customers active in the last 30 days",
    "lifecycle": "Customers by lifecycle stage",
    "predictions": "Predictions of repeat buying",
    "horizon_days": "Horizon (days)",
    "fitted": "Fitted in this run",
    "basis": "Customers by basis of prediction",
    "bgnbd": "BG/NBD parameters (orders)",
    "gamma_gamma": "Gamma-Gamma parameters (spend)",
    "spend_reason": "Why spend is not predicted",
    "affinity": "Category affinity",
    "seconds": "Time",
    "read": "Reading",
    "compute": "Computing",
    "write": "Writing",
    "total": "Total",
    # segments
    "clustering": "Clustering segments",
    "profiles": "Profiles",
    "reason": "Why",
    "chosen_k": "Number of segments chosen (k)",
    "elbow_k": "Elbow of the inertia curve at k",
    "rule": "How k was chosen",
    "silhouette": "Silhouette (−1 to 1, higher separates better)",
    "sizes": "Sizes",
    "matched_segments": "Segments kept from the previous run",
    "new_segments": "New segments",
    "retired_segments": "Segments retired",
    "rules": "Rule segments",
    "rule_segments": "Rule segments refreshed",
    "errors": "Rules that failed",
    # segments, an incremental run (segments/services.py segments_assign_incremental)
    "stayed": "Customers who stayed in their segment",
    "moved": "Customers who moved to another segment",
    "new_members": "Customers placed for the first time",
    "refreshed_for_a_few": "Re-evaluated only for customers whose answer could change (how many)",
    "incremental_requested": "Asked for an incremental run",
    "full_because": "Why everyone was clustered instead",
    # recommendations
    "durations": "Time per phase",
    "pruned_runs": "Old runs removed",
    "metrics": "Offline quality (holdout)",
    "items": "Items",
    "events": "Events",
    "interactions": "Customer–item interactions",
    "customers_with_history": "Customers with history",
    "customers_cold": "Customers without history (popular lists)",
    "items_per_kind": "Items per kind",
    "inactive_items": "Inactive items",
    "recent_impressions": "Recent impressions",
    "customers_not_trained_no_consent": "Customers left out (no consent)",
    "similar_pairs": "Similar-item pairs",
    "recommendations": "Suggestions written",
    "evaluate": "Offline evaluation",
    "fit": "Fitting the model",
    "recommend": "Suggestions for customers with history",
    "cold_start": "Popular lists and customers without history",
    "similar_items": "Similar items",
    "product": "Products",
    "activity": "Activities",
    "post": "Community posts",
    "default": "Default model",
    # experiments
    "experiment": "Experiment",
    "population": "Customers who may take part",
    "customers_held_out": "Customers held out of every experiment",
    "variants": "Variants",
    "newly_assigned": "Customers newly enrolled",
    "suggestions": "Suggestions written",
    "popularity": "Popularity baseline",
    "ndcg@10": "NDCG@10",
    "precision@10": "Precision@10",
    "recall@10": "Recall@10",
    "hit_rate@10": "Hit rate@10",
    "coverage@10": "Coverage@10 (share of items suggested)",
    "map@10": "MAP@10",
    "novelty@10": "Novelty@10",
    "n_users": "Customers evaluated",
    "protocol": "How it was measured",
    "held_out": "Items held out",
    # recommender parameters
    "configuration": "Configuration",
    "model": "Model parameters",
    "components": "Blended configurations",
    "weight": "Weight",
    "normalisation": "Scores put on one scale by",
    "factors": "Latent factors",
    "beta": "Popularity damping (β)",
    "value_transform": "Interaction values",
    "half_life_days": "Half-life of interest (days)",
    "decay_from": "Decay counted from",
    "weights": "Weights of events",
    "window_days": "Window (days)",
    "exclude": "Excluded",
    "top_n": "Suggestions per customer",
    "similar": "Similar items",
    "impressions": "Impressions",
    "penalty": "Penalty",
    "holdout": "Holdout",
    "last_new_items": "Latest new items held out",
    "min_items": "Minimum items",
    "k": "Neighbours (k)",
    "n": "Items per list",
    # the sequence model's parameters
    "max_len": "Latest items of each history read",
    "blocks": "Self-attention blocks",
    "heads": "Attention heads",
    "dropout": "Dropout",
    "epochs": "Training epochs",
    "batch_size": "Batch size",
    "learning_rate": "Learning rate",
    "n_negatives": "Negative samples per step",
    "max_updates": "Most training steps",
    "training": "Training of the sequence model",
    "windows": "Training windows in the histories",
    "windows_trained": "Windows trained on",
    "epochs_run": "Epochs run",
    "updates": "Training steps run",
}

# Codes written as words where they are values.
VALUE_WORDS = {
    "pure_svd": "PureSVD",
    "item_knn": "item-based collaborative filtering",
    "user_knn": "user-based collaborative filtering",
    "rp3beta": "RP3beta (graph walk)",
    "popularity": "popularity",
    "blend": "blend of configurations",
    "sasrec": "sequence model (SASRec)",
    "minmax": "min–max per customer",
    "zscore": "z-score per customer",
    "item_knn_cosine": "item-kNN (cosine similarity)",
    "kmeans": "k-means",
    "agglomerative": "hierarchical (agglomerative)",
    "log1p": "log(1 + x)",
}
CODED = {"algorithm", "method", "value_transform", "decay_from", "normalisation"}

# Figures that are shares (shown as percentages) and scores (shown with three decimals).
SHARES = {"coverage@10", "hit_rate@10", "coverage"}
SCORES = {"ndcg@10", "precision@10", "recall@10", "map@10", "silhouette"}
TIMES = {"seconds", "durations", "duration_s"}


# Rows come in the order of LABELS (times last), whatever order the database kept the keys in
# (PostgreSQL's jsonb sorts them by length); keys without a label keep their order, after.
_RANK = {key: i for i, key in enumerate(k for k in LABELS if k not in TIMES and k != "total")}
_RANK.update({key: len(LABELS) + i for i, key in enumerate([*sorted(TIMES), "total"])})


def ranked(keys: Iterable) -> list:
    keys = list(keys)
    position = {k: i for i, k in enumerate(keys)}
    return sorted(keys, key=lambda k: (_RANK.get(str(k), len(LABELS) - 0.5), position[k]))


@dataclass(frozen=True)
class Row:
    """One line of a figures table: a label, its value as text, how deep it is nested, and a link."""

    label: str
    value: str = ""
    depth: int = 0
    url: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def label_for(key) -> str:
    key = str(key)
    return LABELS.get(key) or display.words(key)


def value_text(key: str, value, *, timing: bool = False) -> str:
    """A single figure in words: counts rounded with separators, shares as percentages, scores to
    three decimals, seconds as durations, yes/no for flags, lists joined."""
    if value is None:
        return display.MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(value_text(key, v, timing=timing) for v in value) or display.MISSING
    if isinstance(value, (int, float)):
        if timing or key in TIMES:
            return display.duration(value)
        if key in SHARES:
            return display.percent(value)
        if key in SCORES:
            return display.number(value, 3)
        if isinstance(value, float) and not float(value).is_integer():
            # up to two decimals (three below 1), without trailing zeros: 1.5, 0.25, 0.125
            text = display.number(value, 2 if abs(value) >= 1 else 3)
            return text.rstrip("0").rstrip(".") if "." in text else text
        return display.number(value)
    if key in CODED:
        return VALUE_WORDS.get(str(value)) or display.words(value)
    return str(value)


def rows(
    data: Mapping | None,
    *,
    depth: int = 0,
    timing: bool = False,
    hidden: Iterable[str] = HIDDEN,
    links: Mapping[str, Callable[[object], tuple[str, str] | None]] | None = None,
    named: bool = False,
    worded: bool = False,
    parent: str = "",
) -> list[Row]:
    """`data` (a step's counts, a run's parameters) as rows: nested mappings become a heading row
    followed by their own rows one level deeper; `links` turns a key's value into (text, url)."""
    out: list[Row] = []
    hidden = set(hidden)
    data = data or {}
    for key in data if named or worded else ranked(data):
        value = data[key]
        key = str(key)
        label = key if named else display.words(key) if worded else label_for(key)
        link = (links or {}).get(key)
        if link is not None:
            made = link(value)
            if made:
                out.append(Row(label, made[0], depth, made[1]))
            continue
        if key in hidden:
            continue
        if key in SENTENCES and isinstance(value, Mapping):
            out.append(Row(label, SENTENCES[key](value), depth))
            continue
        in_time = timing or key in TIMES
        if isinstance(value, Mapping):
            if not value:
                out.append(Row(label, "none", depth))
                continue
            out.append(Row(label, "", depth))
            out.extend(
                rows(
                    value,
                    depth=depth + 1,
                    timing=in_time,
                    hidden=hidden,
                    links=links,
                    named=(parent, key) in NAMED,
                    worded=key in WORDED,
                    parent=key,
                )
            )
        else:
            out.append(Row(label, value_text(key, value, timing=in_time), depth))
    return out


# --- figures told in one sentence ----------------------------------------------------------------


def affinity_sentence(counts: Mapping) -> str:
    """The profiles step's category affinity model (profiles/affinity.py) in one sentence: whom it
    covers, what it learnt from, how well it ranks against the share of past purchases, how
    calibrated it is, how long it took."""
    if counts.get("model") == "kept":
        return (
            f"Kept as the last full run computed it for {display.number(counts.get('customers_with_affinity'))} "
            "of these customers (only a full run refits the model)."
        )
    took = display.duration(counts.get("seconds"))
    if counts.get("model") in (None, "none"):
        return f"Not computed: {counts.get('reason') or 'no model'} ({took})."
    held = counts.get("held_out") or {}
    fit = (
        f"{display.number(counts.get('customers_with_affinity'))} customers, up to "
        f"{display.number(counts.get('candidates_per_customer'))} categories each, from a model fitted on "
        f"{display.number(counts.get('training_rows'))} customer–category pairs "
        f"({display.number(counts.get('training_positives'))} bought within "
        f"{display.days(counts.get('horizon_days'))})"
    )
    if "auc" not in held:
        return f"{fit}; too few held-out customers to measure it ({took})."
    corrected = "after an isotonic correction" if held.get("calibration") == "isotonic" else "as fitted"
    return (
        f"{fit}; on held-out customers it ranks their next purchases with an AUC of "
        f"{display.number(held['auc'], 3)} (the share of past purchases: {display.number(held['auc_past_share'], 3)}) "
        f"and its probabilities are off by {display.percent(held['ece'])} on average ({corrected}); {took}."
    )


# Counts shown as one sentence rather than as a table of their keys.
SENTENCES: dict[str, Callable[[Mapping], str]] = {"affinity": affinity_sentence}


# --- a run and its steps --------------------------------------------------------------------------


def progress_text(step: PipelineStep | None, name: str) -> str:
    """ "Profiles — 40,000 of 120,000 customers (33%)": the step, what it last said, how far it is."""
    label = step_label(name)
    if step is None:
        return f"{label} — waiting for the steps before it"
    pct = f"{step.progress * 100:.0f}%"
    if step.status == RunStatus.RUNNING:
        return f"{label} — {step.message} ({pct})" if step.message else f"{label} — {pct}"
    if step.status == RunStatus.SUCCEEDED:
        return f"{label} — done{': ' + step.message if step.message else ''}"
    if step.status == RunStatus.FAILED:
        first = step.error.splitlines()[0] if step.error else "failed"
        return f"{label} — failed: {first}"
    return f"{label} — {status_label(step.status).lower()}{': ' + step.message if step.message else ''}"


def _elapsed(started, finished, duration_s=None) -> str:
    if duration_s is not None:
        return display.duration(duration_s)
    if started is None:
        return ""
    seconds = ((finished or timezone.now()) - started).total_seconds()
    return display.duration(max(seconds, 0.0))


def is_matrix(data) -> bool:
    """A mapping of mappings (metrics per kind, per model): shown as one table with a column each."""
    return (
        isinstance(data, Mapping)
        and len(data) > 0
        and all(
            isinstance(v, Mapping) and v and not any(isinstance(x, Mapping) for x in v.values()) for v in data.values()
        )
    )


def matrix_group(title: str, data: Mapping, *, columns: Mapping[str, str] | None = None) -> dict:
    """`{column: {figure: value}}` as a table: a row per figure, a column per key of `data`."""
    keys = ranked(dict.fromkeys(k for figures in data.values() for k in figures))
    order = list(data) if columns else ranked(data)
    return {
        "title": title,
        "columns": [(columns or {}).get(c) or label_for(c) for c in order],
        "rows": [
            {"label": label_for(k), "values": [value_text(k, data[c].get(k)) for c in order], "depth": 0} for k in keys
        ],
    }


def step_figures(step: PipelineStep | None, *, links=None) -> list[dict]:
    """A step's counts as groups of rows (see `grouped`); figures per kind as one table."""
    if step is None or not step.counts:
        return []
    plain = {k: v for k, v in step.counts.items() if not is_matrix(v)}
    out = grouped(rows(plain, links=links))
    out += [matrix_group(label_for(k), step.counts[k]) for k in ranked(step.counts) if k not in plain]
    return out


def grouped(figures: list[Row]) -> list[dict]:
    """Rows as small tables side by side: each top-level heading with the rows under it (one level
    up), and the plain top-level rows between headings together, untitled."""
    out: list[dict] = []
    for row in figures:
        if row.depth == 0 and not row.value and not row.url:
            out.append({"title": row.label, "rows": []})
        elif row.depth == 0:
            if not out or out[-1]["title"]:
                out.append({"title": "", "rows": []})
            out[-1]["rows"].append(row.as_dict())
        else:
            out[-1]["rows"].append({**row.as_dict(), "depth": row.depth - 1})
    return out


def _run_took(run: PipelineRun) -> str:
    if run.started_at is None:
        return ""
    if run.finished_at is None and run.status == RunStatus.RUNNING:
        return f"running for {_elapsed(run.started_at, None)}"
    return _elapsed(run.started_at, run.finished_at)


BACKEND_WORDS = {"local": "locally (numpy and the database, in the worker)", "spark": "on Apache Spark"}


def backend_text(run: PipelineRun, steps: list[PipelineStep]) -> str:
    """What computed the run, in words: "on Apache Spark (profiles); locally: segments" when its steps
    differ (a step without a Spark implementation runs locally), else the one backend."""
    by_backend: dict[str, list[str]] = {}
    for step in steps:
        names = by_backend.setdefault(step.backend, [])
        if step.name not in names:
            names.append(step.name)
    if len(by_backend) <= 1:
        return BACKEND_WORDS.get(run.backend, run.backend)
    parts = [f"{BACKEND_WORDS.get(b, b).split(' (')[0]} ({', '.join(names)})" for b, names in by_backend.items()]
    return "; ".join(parts)


def run_view(run: PipelineRun, steps: list[PipelineStep], *, links=None) -> dict:
    """What the run page shows, as plain data: the server renders it and the JSON view returns it.

    One entry per step asked for, in order, with the latest record of that step in the run (an
    earlier failed attempt is in the run's error text); a step not reached yet is "waiting".
    """
    latest: dict[str, PipelineStep] = {}
    for step in sorted(steps, key=lambda s: s.pk):
        latest[step.name] = step
    items = []
    for name in run.steps:
        step = latest.get(name)
        status = step.status if step is not None else WAITING
        background, colour = status_colours(status)
        progress = 1.0 if status == RunStatus.SUCCEEDED else (step.progress if step is not None else 0.0)
        items.append(
            {
                "name": name,
                "label": step_label(name),
                "status": status,
                "status_label": status_label(status),
                "colour": colour,
                "background": background,
                "progress": round(progress, 4),
                "percent": round(progress * 100),
                "text": progress_text(step, name),
                "took": _elapsed(step.started_at, step.finished_at, step.duration_s) if step is not None else "",
                "started": display.when(step.started_at) if step is not None and step.started_at else "",
                "figures": step_figures(step, links=links),
            }
        )
    background, colour = status_colours(run.status)
    return {
        "id": run.pk,
        "status": run.status,
        "status_label": status_label(run.status),
        "colour": colour,
        "background": background,
        "active": run.status in ACTIVE,
        "took": _run_took(run),
        "started": display.when(run.started_at) if run.started_at else "",
        "finished": display.when(run.finished_at) if run.finished_at else "",
        "error": run.error,
        "steps": items,
        "has_figures": any(item["figures"] for item in items),
    }


def figures_html(groups: list[dict]):
    """Groups of figures as the run pages show them, side by side (the template escapes every label
    and value): for an admin page's read-only field."""
    if not groups:
        return display.MISSING
    return format_html(
        '<div style="display:flex;flex-wrap:wrap;gap:8px 28px;align-items:flex-start">{}</div>',
        render_to_string("admin/pipeline/includes/figures.html", {"groups": groups}),
    )
