"""``{{ amount|usd }}``: the one money rounding rule (``billing.money``) in templates."""

from __future__ import annotations

from django import template

from billing.money import usd as _usd

register = template.Library()


@register.filter
def usd(value) -> str:
    if value in (None, ""):
        return ""
    return _usd(value)
