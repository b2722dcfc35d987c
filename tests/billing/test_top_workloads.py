"""The top workloads are ranked in SQL (``billing.spend_history.ranked_sums``): only N rows
leave the database. They must be exactly the ones sorting every workload in Python picks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum

from billing import dashboard
from billing.metering import ledger_correct
from billing.models import LedgerEntry, SpendRollup, SpendRollupMonth
from billing.rollups import rollup_dirty
from billing.spend_filters import _key
from billing.spend_history import Source, rank_key, ranked_sums
from provisioner import clock
from tenants.services import project_create

from ..factories import WorkloadFactory
from .helpers import account

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _python_ranking(tenant, since, until) -> list[tuple]:
    """The reference: every (workload, project) summed from the raw ledger, sorted in Python."""
    rows = (LedgerEntry.objects.filter(tenant=tenant, bucket_start__gte=datetime.combine(since, datetime.min.time(), UTC),
                                       bucket_start__lt=datetime.combine(until, datetime.min.time(), UTC))
            .values_list("workload_id", "project_id").order_by())
    sums: dict = {}
    for w, p, usd in rows.annotate(s=Sum("amount_usd")):
        sums[(_key(w), _key(p))] = sums.get((_key(w), _key(p)), Decimal(0)) + usd
    return [k for k, _ in sorted(sums.items(), key=rank_key)]


@pytest.mark.django_db
def test_sql_ranking_equals_python_ranking_ties_included(tenant, project, owner):
    research = project_create(tenant=tenant, name="Research")
    acct = account(tenant, name="RunPod main")
    start_edge, middle, end_edge = NOW - timedelta(days=360), NOW - timedelta(days=120), NOW - timedelta(days=3)

    def charge(w, proj, at, usd: str) -> None:
        ledger_correct(tenant_id=tenant.pk, project_id=proj.pk, provider_account_id=acct.pk,
                       workload_id=w.pk if w else None, at=at, amount=Decimal(usd), note="bench")

    tied = [WorkloadFactory(tenant=tenant, project=project, owner=owner, name=f"tie{i}") for i in range(8)]
    # eight workloads at exactly $30, each reaching it through different parts of the range
    # (the partial month at its start, whole months, the current month)
    for i, w in enumerate(tied):
        if i % 3 == 0:
            charge(w, project, start_edge, "10.00"), charge(w, project, middle, "20.00")
        elif i % 3 == 1:
            charge(w, project, middle, "30.00")
        else:
            charge(w, project, middle, "12.50"), charge(w, project, end_edge, "17.50")
    moved = WorkloadFactory(tenant=tenant, project=project, owner=owner, name="moved")
    charge(moved, project, middle, "30.00"), charge(moved, research, end_edge, "30.00")  # one workload, two projects
    removed = WorkloadFactory(tenant=tenant, project=project, owner=owner, name="removed")
    charge(removed, project, middle, "30.00")
    big = WorkloadFactory(tenant=tenant, project=research, owner=owner, name="big")
    charge(big, research, start_edge, "99.99")
    for i in range(4):
        small = WorkloadFactory(tenant=tenant, project=research, owner=owner, name=f"small{i}")
        charge(small, research, end_edge, f"{i + 1}.25")
    charge(None, research, middle, "30.00")  # spend whose workload is gone, in the other project
    with clock.frozen(NOW):
        rollup_dirty()
        removed.delete()  # its lines stay, without a workload
        assert SpendRollupMonth.objects.filter(tenant=tenant).exists() and SpendRollup.objects.filter(tenant=tenant).exists()
        projects, providers = dashboard.name_maps(tenant)
        f = dashboard.parse_filters({"range": "365d", "grain": "month"}, projects=projects, providers=providers,
                                    today=NOW.date())
        until = NOW.date()
        expected = _python_ranking(tenant, f.start, until)
        assert len(expected) == 17 and expected[0] == (str(big.pk), str(research.pk))
        # twelve pairs at $30: by workload id, then project id; lines without a workload last
        assert {sums for sums in expected[1:13]} == {*((str(w.pk), str(project.pk)) for w in tied),
                                                    (str(moved.pk), str(project.pk)), (str(moved.pk), str(research.pk)),
                                                    (None, str(project.pk)), (None, str(research.pk))}
        assert expected[11][0] is None and expected[12][0] is None and expected[10][0] is not None
        for source in ("rollup", "ledger"):
            src = Source(tenant, f, source)
            assert len(src.parts(f.start, until)) == (3 if source == "rollup" else 1)
            for limit in range(len(expected) + 1):  # every cut, inside the tie of eleven $30 pairs too
                top, sums = ranked_sums(src, f.start, until, limit=limit)
                assert top == expected[:limit], (source, limit)
                assert set(sums) == set(top)
            # the workloads asked for come back with every one of their pairs, ranked or not
            top, sums = ranked_sums(src, f.start, until, limit=2, include={str(moved.pk), None})
            assert top == expected[:2]
            assert sums[(str(moved.pk), str(project.pk))] == sums[(str(moved.pk), str(research.pk))] == (Decimal("30"), 0)
            assert sums[(None, str(project.pk))][0] == sums[(None, str(research.pk))][0] == Decimal("30")
        view = dashboard.build(tenant, f, projects=projects, providers=providers)
    # the page's top ten: the SQL ranking cut inside the $30 tie
    assert [(t["workload_id"], t["project"]) for t in view.top] == [(w, projects[p]) for w, p in expected[:dashboard.TOP_N]]
    assert [t["usd"] for t in view.top] == [Decimal("99.99")] + [Decimal("30")] * (dashboard.TOP_N - 1)
