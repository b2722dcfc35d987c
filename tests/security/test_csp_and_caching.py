"""Issue 16 §6: a script policy without 'unsafe-inline' / 'unsafe-eval' that the pages actually
live by (no inline script or handler in any template or rendered page), and no-store on pages
that show credentials or money."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

from billing.budgets import budget_create

ROOT = Path(__file__).resolve().parents[2]
INLINE_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.I)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)


def _script_src(csp: str) -> str:
    return next(d for d in csp.split(";") if d.strip().startswith("script-src")).strip()


@pytest.mark.django_db
def test_csp_allows_scripts_from_our_origin_only(client, owner):
    client.force_login(owner)
    csp = client.get(reverse("workloads:pod_list"))["Content-Security-Policy"]
    assert _script_src(csp) == "script-src 'self'"
    assert "unsafe-eval" not in csp and "object-src 'none'" in csp


def test_no_template_has_an_inline_script_or_handler():
    offenders = []
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        if INLINE_HANDLER.search(text) or INLINE_SCRIPT.search(text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


@pytest.mark.django_db
def test_spend_page_charts_are_inert_json(client, finance, tenant, sandbox):
    budget_create(tenant=tenant, name="Team", amount_usd=10, period="month")
    client.force_login(finance)
    html = client.get(reverse("billing:spend")).content.decode()
    # no spend yet: the spend chart is an empty state (issue 15 §2.7), the others inert JSON
    assert 'data-plotly-figure="chart-forecast-figure"' in html and 'data-plotly-figure="chart-budgets-figure"' in html
    assert 'id="chart-spend" class="chart-empty"' in html
    assert not INLINE_SCRIPT.search(html) and not INLINE_HANDLER.search(html)


@pytest.mark.django_db
def test_pages_with_credentials_or_money_are_not_stored(client, owner, sandbox, tenant):
    client.force_login(owner)
    for url in (reverse("providers:list"), reverse("providers:detail", args=[sandbox.pk]),
                reverse("providers:credentials", args=[sandbox.pk]), reverse("billing:spend"),
                reverse("billing:budgets"), reverse("billing:export"), reverse("workloads:secrets")):
        r = client.get(url)
        assert r.status_code == 200, url
        assert "no-store" in r["Cache-Control"], url

