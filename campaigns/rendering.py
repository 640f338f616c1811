"""
Message templates, rendered by Django's template engine in a sandbox.

The sandbox is four things:

* an engine of its own with no template loaders (no `{% include %}` / `{% extends %}` of files)
  and no tag libraries to `{% load %}`;
* an allow-list: a message may use the tags in ALLOWED_TAGS and the filters in ALLOWED_FILTERS
  and nothing else (docs/campaigns.md lists them). Anything else is refused when the template is
  validated, naming the tag or filter, so a tag that needs a request (`{% querystring %}`), pads
  text to any width (`ljust`, `center`, `stringformat`), grows text (`add`, `make_list`) or marks
  it safe never compiles;
* bounded work: a message stops at CAMPAIGN_MESSAGE_MAX_CHARS characters (counted as each piece
  is written, and checked on every filter's result, so an oversized text is never assembled) and
  at CAMPAIGN_TEMPLATE_MAX_STEPS render steps (each loop iteration, each piece of template
  rendered, each filter applied), so nested loops end early whatever they loop over;
* a context of plain, frozen data: read-only mappings, tuples, strings and numbers. No model
  instance, queryset, settings object or bound method is ever in it, so a template can reach
  nothing but the values given, and a "method" it names (`{{ customer.clear }}`) is not there to
  call (mappings are `MappingProxyType`, lists are tuples).

A template that does not compile raises `TemplateError`; one that fails while rendering for a
given customer (a limit reached, a filter that fails on that customer's data) raises
`RenderError`, a `TemplateError` whose message says why. Sends fail that one delivery with it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from itertools import islice
from types import MappingProxyType
from typing import Any

from django.conf import settings
from django.template import Context, Engine, Library, Node, Template, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import Lexer, TokenType
from django.template.defaulttags import ForNode

# What a message may use. Tags: conditions, loops, names for values, a fallback, comments, the
# date, whitespace. Filters: text and number formatting whose result is bounded by their input.
ALLOWED_TAGS = frozenset({"if", "for", "with", "firstof", "comment", "now", "spaceless"})
_TAG_ORDER = ("if", "for", "with", "firstof", "comment", "now", "spaceless")
# The closing and middle parts of the allowed tags.
_INNER_TAGS = frozenset({"elif", "else", "endif", "empty", "endfor", "endwith", "endcomment", "endspaceless"})
ALLOWED_FILTERS = frozenset(
    {
        "capfirst",
        "cut",
        "date",
        "default",
        "default_if_none",
        "first",
        "floatformat",
        "join",
        "last",
        "length",
        "lower",
        "pluralize",
        "slice",
        "time",
        "title",
        "truncatechars",
        "truncatewords",
        "upper",
        "urlencode",
        "yesno",
    }
)
MAX_FLOAT_PLACES = 20  # floatformat:N builds a number of N digits

_INVALID_FILTER = re.compile(r"Invalid filter: '([^']*)'")


class TemplateError(ValueError):
    """A template that cannot be used, with the reason."""


class RenderError(TemplateError):
    """A template that compiled but could not be rendered for one context (a limit, or a filter that failed)."""

    def __init__(self, reason: str):
        super().__init__(f"The message could not be rendered: {reason}")


# --- bounded work --------------------------------------------------------------------------------


class _Budget:
    """The render steps and characters one message may still use. Once exceeded it stays exceeded:
    `{% if %}` swallows errors raised inside its condition, so the next step (or the end) raises again."""

    def __init__(self, *, max_chars: int, max_steps: int):
        self.max_chars, self.max_steps = max_chars, max_steps
        self.chars = self.steps = 0
        self.exceeded: str = ""

    def _fail(self, reason: str) -> None:
        self.exceeded = self.exceeded or reason
        raise RenderError(self.exceeded)

    def too_long(self) -> str:
        return f"the message is longer than {self.max_chars:,} characters (CAMPAIGN_MESSAGE_MAX_CHARS)"

    def step(self, n: int = 1) -> None:
        if self.exceeded:
            raise RenderError(self.exceeded)
        self.steps += n
        if self.steps > self.max_steps:
            self._fail(
                f"the template made more than {self.max_steps:,} render steps (loop iterations, pieces of template "
                "and filters; CAMPAIGN_TEMPLATE_MAX_STEPS): loop over fewer things"
            )

    def write(self, n_chars: int) -> None:
        self.chars += n_chars
        if self.chars > self.max_chars:
            self._fail(self.too_long())

    def value(self, text: Any, filter_name: str) -> None:
        if isinstance(text, str) and len(text) > self.max_chars:
            self._fail(
                f"the filter {filter_name!r} made a value longer than {self.max_chars:,} characters "
                "(CAMPAIGN_MESSAGE_MAX_CHARS)"
            )


_BUDGET: ContextVar[_Budget | None] = ContextVar("campaign_render_budget", default=None)


def _metered_filter(name: str, func):
    """The filter, costing a step, and refused when its result is longer than a whole message may be."""

    @functools.wraps(func)  # keeps is_safe, needs_autoescape, ... and the signature Django checks
    def metered(*args, **kwargs):
        budget = _BUDGET.get()
        if budget is not None:
            budget.step()
        result = func(*args, **kwargs)
        if budget is not None:
            budget.value(result, name)
        return result

    return metered


def _bounded_floatformat(func):
    @functools.wraps(func)
    def floatformat(text, arg=-1):
        digits = str(arg).rstrip("gu")
        try:
            places = abs(int(digits)) if digits else 0
        except ValueError:
            places = 0  # Django's own floatformat ignores an argument that is not a number
        if places > MAX_FLOAT_PLACES:
            raise RenderError(f"floatformat takes at most {MAX_FLOAT_PLACES} decimal places, not {places}")
        return func(text, arg)

    return floatformat


class _CountedSequence:
    """A for loop's sequence: every iteration it will make is a render step, paid before it starts."""

    def __init__(self, expression):
        self.expression = expression

    def resolve(self, context, ignore_failures=False):
        values = self.expression.resolve(context, ignore_failures=ignore_failures)
        budget = _BUDGET.get()
        if budget is None or values is None:
            return values
        if not hasattr(values, "__len__"):
            values = list(islice(values, budget.max_steps + 1))
        budget.step(len(values))
        return values

    def __str__(self) -> str:
        return str(self.expression)


def _meter_nodes(template: Template) -> None:
    """Make every node of a compiled template pay a step when rendered, and its output when it is a leaf."""
    for node in template.nodelist.get_nodes_by_type(Node):
        if isinstance(node, ForNode):
            node.sequence = _CountedSequence(node.sequence)
        leaf = not any(getattr(node, attr, None) for attr in node.child_nodelists)
        original = node.render_annotated

        def render_annotated(context, _original=original, _leaf=leaf):
            budget = _BUDGET.get()
            if budget is not None:
                budget.step()
            out = _original(context)
            if budget is not None and _leaf:
                budget.write(len(out))
            return out

        node.render_annotated = render_annotated


# --- the engine ----------------------------------------------------------------------------------


def _sandbox_library() -> Library:
    lib = Library()
    lib.tags = {name: tag for name, tag in defaulttags.register.tags.items() if name in ALLOWED_TAGS}
    filters = {name: f for name, f in defaultfilters.register.filters.items() if name in ALLOWED_FILTERS}
    filters["floatformat"] = _bounded_floatformat(filters["floatformat"])
    lib.filters = {name: _metered_filter(name, f) for name, f in filters.items()}
    return lib


@lru_cache(maxsize=2)
def sandbox_engine(autoescape: bool = False) -> Engine:
    engine = Engine(
        dirs=[], app_dirs=False, loaders=[], libraries={}, autoescape=autoescape, debug=False, string_if_invalid=""
    )
    engine.template_builtins = [_sandbox_library()]
    return engine


def _check_tags(source: str) -> None:
    for token in Lexer(source).tokenize():
        if token.token_type != TokenType.BLOCK or not token.contents.split():
            continue
        name = token.contents.split()[0]
        if name not in ALLOWED_TAGS and name not in _INNER_TAGS:
            raise TemplateError(
                f"the tag {name!r} (line {token.lineno}) is not allowed in a message; "
                f"allowed tags: {', '.join(_TAG_ORDER)}"
            )


@lru_cache(maxsize=256)
def compile_template(source: str, autoescape: bool = False) -> Template:
    _check_tags(source)
    try:
        template = Template(source, engine=sandbox_engine(autoescape))
    except TemplateSyntaxError as exc:
        unknown = _INVALID_FILTER.search(str(exc))
        if unknown:
            raise TemplateError(
                f"the filter {unknown.group(1)!r} is not allowed in a message; "
                f"allowed filters: {', '.join(sorted(ALLOWED_FILTERS))}"
            ) from exc
        raise TemplateError(str(exc)) from exc
    _meter_nodes(template)
    return template


def validate_template(source: str) -> None:
    """Raise `TemplateError` naming what is wrong: a syntax error, a tag or filter not on the allow-list."""
    compile_template(source)


def freeze(value: Any) -> Any:
    """Plain, immutable data only; anything else becomes its text."""
    if value is None or isinstance(value, (bool, int, float, str, MappingProxyType)):
        return value  # a MappingProxyType here was frozen by us already (shared parts are frozen once per chunk)
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(freeze(v) for v in value)
    return str(value)


def render(source: str, context: Mapping[str, Any], *, autoescape: bool = False) -> str:
    """The message for one context. Raises `TemplateError` (it does not compile) or `RenderError`
    (a limit was reached, or a filter failed on this context's data), never anything else."""
    template = compile_template(source, autoescape)
    budget = _Budget(
        max_chars=int(settings.CAMPAIGN_MESSAGE_MAX_CHARS), max_steps=int(settings.CAMPAIGN_TEMPLATE_MAX_STEPS)
    )
    token = _BUDGET.set(budget)
    try:
        out = template.render(Context(dict(freeze(context)), autoescape=autoescape))
    except TemplateError:
        raise
    except Exception as exc:  # a filter that fails on this customer's data, e.g. `first` of a mapping
        raise RenderError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        _BUDGET.reset(token)
    if budget.exceeded:  # raised inside an {% if %} condition, which swallows errors
        raise RenderError(budget.exceeded)
    if len(out) > budget.max_chars:
        raise RenderError(budget.too_long())
    return out
