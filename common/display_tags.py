"""Template filters over common.display: ``{% load marketing %}`` then ``{{ rate|percent }}``,
``{{ spend|money }}``, ``{{ count|number }}``, ``{{ recency|days }}``, ``{{ seconds|duration }}``,
``{{ code|words }}``, ``{{ change|signed_percent }}``, ``{{ moment|ago }}``. Registered as the ``marketing``
library in settings.TEMPLATES; the output is plain text and is escaped like any other variable."""

from django import template

from . import display

register = template.Library()


@register.filter
def percent(value, digits=1):
    return display.percent(value, int(digits))


@register.filter
def signed_percent(value, digits=1):
    return display.signed_percent(value, int(digits))


@register.filter
def money(value, currency=None):
    return display.money(value, currency or None)


@register.filter
def number(value, digits=0):
    return display.number(value, int(digits))


@register.filter
def days(value):
    return display.days(value)


@register.filter
def duration(value):
    return display.duration(value)


@register.filter
def words(value):
    return display.words(value)


@register.filter
def ago(value):
    return display.ago(value)


@register.filter
def when(value):
    return display.when(value)


@register.filter
def points(value, digits=1):
    return display.points(value, int(digits))


@register.filter
def p_value(value):
    return display.p_value(value)
