"""
Message templates, rendered by Django's template engine in a sandbox.

The sandbox is two things:

* an engine of its own with no template loaders (no `{% include %}` / `{% extends %}` of files), no
  tag libraries to `{% load %}`, and a trimmed set of built-in tags (no `debug`, which would print
  the context and `sys.modules`, no `url`, `csrf_token`, `include`, `extends`, `load`);
* a context of plain, frozen data: read-only mappings, tuples, strings and numbers. No model
  instance, queryset, settings object or bound method is ever in it, so a template can reach
  nothing but the values given, and a "method" it names (`{{ customer.clear }}`) is not there to
  call (mappings are `MappingProxyType`, lists are tuples).
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from django.template import Context, Engine, Library, Template, TemplateSyntaxError
from django.template import defaultfilters, defaulttags

BLOCKED_TAGS = frozenset({"debug", "include", "extends", "load", "url", "csrf_token", "block", "ssi", "lorem", "resetcycle"})


class TemplateError(ValueError):
    """A template that does not compile, with the reason."""


def _sandbox_library() -> Library:
    lib = Library()
    lib.tags = {name: tag for name, tag in defaulttags.register.tags.items() if name not in BLOCKED_TAGS}
    lib.filters = dict(defaultfilters.register.filters)
    return lib


@lru_cache(maxsize=2)
def sandbox_engine(autoescape: bool = False) -> Engine:
    engine = Engine(dirs=[], app_dirs=False, loaders=[], libraries={}, autoescape=autoescape, debug=False,
                    string_if_invalid="")
    engine.template_builtins = [_sandbox_library()]
    return engine


@lru_cache(maxsize=256)
def compile_template(source: str, autoescape: bool = False) -> Template:
    try:
        return Template(source, engine=sandbox_engine(autoescape))
    except TemplateSyntaxError as exc:
        raise TemplateError(str(exc)) from exc


def validate_template(source: str) -> None:
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
    template = compile_template(source, autoescape)
    return template.render(Context(dict(freeze(context)), autoescape=autoescape))
