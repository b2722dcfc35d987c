"""Spend page defects of issue 15 §2.7, on the view: a reversed custom range is swapped and the page
says so (it used to fall back to 7 days silently), a date that cannot be read says what is shown
instead, and a range without spend shows an empty state instead of plotly's meaningless 0–6 axes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing.spend_filters import parse_filters
from provisioner import clock

NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)
SPEND = "/spend/"


def _parse(**params):
    from django.http import QueryDict

    q = QueryDict(mutable=True)
    q.update(params)
    return parse_filters(q, projects={}, providers={}, today=NOW.date())


def test_a_reversed_range_is_swapped_and_says_so():
    f = _parse(range="custom", **{"from": "2026-03-10", "to": "2026-03-01"})
    assert (f.preset, f.start.isoformat(), f.end.isoformat()) == ("custom", "2026-03-01", "2026-03-10")
    assert "swapped" in f.notice and "2026-03-01 to 2026-03-10" in f.notice
    f = _parse(range="custom", **{"from": "2026-03-01", "to": "2026-03-10"})
    assert f.notice == "" and (f.start.isoformat(), f.end.isoformat()) == ("2026-03-01", "2026-03-10")
    f = _parse(range="custom", **{"from": "2026-03-01", "to": "not-a-date"})
    assert f.preset == "7d" and "showing the last 7 days" in f.notice
    f = _parse(range="custom", **{"from": "2026-03-01", "to": "2026-04-30"})
    assert f.end.isoformat() == "2026-03-18" and "up to 2026-03-18" in f.notice
    assert _parse(range="30d").notice == ""


@pytest.mark.django_db
def test_the_page_shows_the_notice_and_an_empty_state_instead_of_empty_axes(client, finance):
    client.force_login(finance)
    with clock.frozen(NOW):
        body = client.get(SPEND + "?range=custom&from=2026-03-10&to=2026-03-01").content.decode()
    assert 'id="range-notice"' in body and "swapped" in body
    assert 'name="from" value="2026-03-01"' in body and 'name="to" value="2026-03-10"' in body
    # nothing was spent in the range: no plotly figure with default axes, a sentence instead
    assert 'id="chart-spend" class="chart-empty"' in body and 'data-plotly-figure="chart-spend-figure"' not in body
    assert "No spend from 2026-03-01 to 2026-03-10" in body
    assert 'id="chart-idle" class="chart-empty"' in body
    with clock.frozen(NOW):
        body = client.get(SPEND).content.decode()
    assert 'id="range-notice"' not in body
