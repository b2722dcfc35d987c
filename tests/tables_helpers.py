"""Helpers for the list pages' tests (provisioner/tables.py): rows of a table, and the check that a
table costs the same number of queries for 1 row as for 20 (no query per row)."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.db import connection
from django.test.utils import CaptureQueriesContext


def row_count(body: str, dom_id: str) -> int:
    """The number of body rows of the table in container ``dom_id`` (an empty table: 0)."""
    table = body.split(f'id="{dom_id}"', 1)[1].split("</table>", 1)[0]
    tbody = table.split("<tbody", 1)[1]
    if 'colspan="' in tbody:  # the empty text
        return 0
    return len(re.findall(r"<tr[ >]", tbody))


def queries_for(client, url: str, *, htmx: bool = False) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, headers={"HX-Request": "true"} if htmx else {})
    assert response.status_code == 200, response.status_code
    return len(ctx.captured_queries)


def assert_same_queries_for_1_and_20_rows(client, url: str, dom_id: str, add_row: Callable[[int], object]) -> int:
    """Load ``url`` with one row, then with twenty: the same number of queries (full page and the
    htmx fragment). Returns the count."""
    add_row(0)
    client.get(url)  # warm per-process caches (content types, the session) out of the count
    one = queries_for(client, url)
    one_fragment = queries_for(client, url, htmx=True)
    assert row_count(client.get(url).content.decode(), dom_id) == 1
    for i in range(1, 20):
        add_row(i)
    assert row_count(client.get(url).content.decode(), dom_id) == 20
    assert queries_for(client, url) == one
    assert queries_for(client, url, htmx=True) == one_fragment
    return one
