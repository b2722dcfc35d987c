"""The organization's placement policy read in one statement (issue 18 §1): the same facts the
four ORM reads gave (accounts, live blocks, last week's launch record, "a hard budget covers this
tenant/project"), on SQLite and PostgreSQL, and the spend gate does not read the budget again."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Count, Q

from billing.gate import spend_gate
from billing.models import Budget
from billing.selectors import hard_budgets_for
from providers.models import ProviderAccount
from provisioner import clock
from tenants.models import Project
from tests.factories import PodFactory, SandboxAccountFactory, WorkloadFactory
from workloads.models import LaunchAttempt, LaunchBlock
from workloads.placement.engine import policy_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def facts(tenant, other_tenant, project, owner):
    """Two enabled accounts (one capped, one with a bid margin), one disabled; blocks live, expired
    and twice on one region; attempts in and out of the window; another organization's rows."""
    now = clock.now()
    a = SandboxAccountFactory(tenant=tenant, name="A", preference_rank=2, spending_cap_usd=Decimal("5"))
    b = SandboxAccountFactory(tenant=tenant, name="B", preference_rank=1, spot_bid_margin_pct=25)
    SandboxAccountFactory(tenant=tenant, name="Off", enabled=False)
    theirs = SandboxAccountFactory(tenant=other_tenant, name="Theirs")
    LaunchBlock.objects.create(tenant=tenant, provider_account=a, region="r1", reason="no capacity",
                               until=now + timedelta(minutes=30))
    LaunchBlock.objects.create(tenant=tenant, provider_account=a, region="r1", reason="quota",
                               until=now + timedelta(minutes=90))  # the later block of the two wins
    LaunchBlock.objects.create(tenant=tenant, provider_account=b, region="*", reason="timeout",
                               until=now + timedelta(minutes=5))
    LaunchBlock.objects.create(tenant=tenant, provider_account=b, region="r2", reason="expired", until=now)
    LaunchBlock.objects.create(tenant=other_tenant, provider_account=theirs, region="r1", reason="x",
                               until=now + timedelta(hours=1))
    pod = PodFactory(workload=WorkloadFactory(tenant=tenant, project=project, owner=owner))
    out = LaunchAttempt.Outcome
    for acc, region, outcome, days in [(a, "r1", out.LAUNCHED, 1), (a, "r1", out.NO_CAPACITY, 2), (a, "r1", out.ADOPTED, 3),
                                       (a, "r2", out.ERROR, 1), (b, "r1", out.LAUNCHED, 6), (b, "r1", out.LAUNCHED, 8)]:
        LaunchAttempt.objects.create(tenant=tenant, pod=pod, provider_account=acc, region=region, outcome=outcome,
                                     at=now - timedelta(days=days))
    return now


def _expected(tenant, project_id, now) -> dict:
    """The facts as the four ORM reads gave them before (the reference)."""
    accounts = list(ProviderAccount.objects.filter(tenant=tenant))
    on = [x for x in accounts if x.enabled]
    blocked = {}
    for x in LaunchBlock.objects.filter(tenant=tenant, until__gt=now).order_by("until"):
        blocked[(str(x.provider_account_id), x.region)] = f"{x.reason}, recently failed (until {x.until:%H:%M} UTC)"
    ok = Q(outcome__in=[LaunchAttempt.Outcome.LAUNCHED, LaunchAttempt.Outcome.ADOPTED])
    success = {(str(r["provider_account_id"]), r["region"]): (r["ok"], r["tried"]) for r in (
        LaunchAttempt.objects.filter(tenant=tenant, at__gte=now - timedelta(days=7))
        .values("provider_account_id", "region").annotate(tried=Count("id"), ok=Count("id", filter=ok)))}
    return {"preference": {str(x.pk): x.preference_rank for x in on}, "names": {str(x.pk): x.name for x in on},
            "disabled": tuple(str(x.pk) for x in accounts if not x.enabled),
            "bid_margins": {str(x.pk): x.spot_bid_margin_pct for x in on if x.spot_bid_margin_pct is not None},
            "blocked": blocked, "success": success,
            "budgeted": hard_budgets_for(tenant_id=tenant.pk, project_id=project_id).exists()}


def test_the_policy_is_the_four_reads_facts_in_one_statement(tenant, project, facts, django_assert_num_queries):
    now = facts
    other = Project.objects.create(tenant=tenant, name="Other")
    Budget.objects.create(tenant=tenant, project=other, name="other's", amount_usd=Decimal("10"))
    Budget.objects.create(tenant=tenant, name="soft", amount_usd=Decimal("10"), hard_limit=False)
    seen = {}

    def gate_factory(**kw):
        seen.update(kw)
        return spend_gate(**kw)

    for project_id, budgeted in [(project.pk, False), (None, False), (other.pk, True)]:
        with django_assert_num_queries(1):
            policy = policy_for(tenant_id=tenant.pk, project_id=project_id, now=now, gate_factory=gate_factory)
        want = _expected(tenant, project_id, now)
        assert want["budgeted"] is budgeted and seen["budgeted"] is budgeted
        got = {k: getattr(policy, k) for k in ("preference", "names", "disabled", "bid_margins", "blocked", "success")}
        assert list(got["preference"]) == list(want["preference"])  # the model's order: rank, then name
        assert got == {k: v for k, v in want.items() if k != "budgeted"}
        assert sorted(seen["capped_account_ids"]) == [str(ProviderAccount.objects.get(name="A").pk)]
    a = str(ProviderAccount.objects.get(name="A").pk)
    assert len(policy.blocked) == 2 and policy.blocked[(a, "r1")].startswith("quota,")  # the later block won
    assert policy.success[(a, "r1")] == (2, 3)


def test_a_tenant_wide_hard_budget_reaches_the_gate_without_a_query_of_its_own(tenant, project, facts,
                                                                                django_assert_num_queries):
    b = ProviderAccount.objects.get(name="B")  # no spending cap
    no_budget = policy_for(tenant_id=tenant.pk, project_id=project.pk, now=facts, gate_factory=spend_gate)
    with django_assert_num_queries(0):  # neither a budget nor a cap: allowed without asking
        assert no_budget.spend_check(str(b.pk), Decimal("100")) == (True, "")
    Budget.objects.create(tenant=tenant, name="all", amount_usd=Decimal("1"))
    with django_assert_num_queries(1):
        budgeted = policy_for(tenant_id=tenant.pk, project_id=project.pk, now=facts, gate_factory=spend_gate)
    allowed, reason = budgeted.spend_check(str(b.pk), Decimal("100"))
    assert not allowed and "all" in reason
