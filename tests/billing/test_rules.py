"""The rule table is the one source of how each provider bills: every registered kind has a
row citing the provider's document, and nothing else (adapters, the wizard) carries its own."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.rules import BILLING_TABLE, SRC, rule_for
from providers.adapters.registry import ADAPTERS, provider_info
from providers.wizard import billing_note


def test_every_registered_kind_has_a_cited_rule():
    for kind in ADAPTERS:
        assert kind in BILLING_TABLE, kind
        assert len(SRC[kind]) > 40, kind  # a title and section, not a placeholder
        assert rule_for(kind).source == SRC[kind]


def test_adapter_defaults_no_longer_override_the_table():
    # before: ProviderInfo turned CoreWeave per-second and dropped Azure's stopped-disk billing
    assert rule_for("coreweave").increment_seconds == 60 and rule_for("coreweave").minimum_charge_seconds == 0
    azure = rule_for("azure")
    assert (azure.increment_seconds, azure.rounding) == (60, "down")
    assert azure.storage_stopped_per_gb_month > 0 and azure.boot_disk_billed
    for kind in ADAPTERS:
        info = provider_info(kind)
        assert not any(hasattr(info, f) for f in ("billing_increment_seconds", "minimum_charge_seconds",
                                                  "storage_billed_while_stopped")), kind


def test_an_account_override_is_explicit_and_typed():
    rule = rule_for("aws", {"billing": {"minimum_charge_seconds": "300", "storage_stopped_per_gb_month": "0.05"}})
    assert rule.minimum_charge_seconds == 300 and rule.storage_stopped_per_gb_month == Decimal("0.05")
    assert rule_for("aws", {"billing": {"kind": "gcp", "unknown": 1}}).kind == "aws"


def test_the_wizard_says_what_the_table_says():
    assert billing_note(provider_info("coreweave")).startswith("Billed per 1 min")
    assert billing_note(provider_info("azure")).startswith("Billed per 1 min (whole minutes only)")
    assert billing_note(provider_info("aws")).startswith("Billed per second, minimum 1 min")
    assert billing_note(provider_info("hetzner")).startswith("Billed per started hour, never more than the monthly")


@pytest.mark.django_db
def test_transitions_record_every_running_session(tenant, project, owner):
    """A restart opens a new session (the first stopped_at used to win: GPU time after a restart
    was never billed); a caller backdating the start (billed from delivery) backdates it."""
    from datetime import UTC, datetime, timedelta

    from provisioner import clock
    from workloads.lifecycle.transitions import pod_transition
    from workloads.models import PodState

    from .helpers import account, make_pod

    pod = make_pod(tenant, project, owner, account(tenant), price="1.00")
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    for minutes, state, fields in ((0, PodState.RUNNING, {"started_at": t0 - timedelta(hours=1)}),
                                   (10, PodState.STOPPED, None), (30, PodState.RUNNING, None),
                                   (40, PodState.STOPPED, None), (50, PodState.TERMINATED, None)):
        with clock.frozen(t0 + timedelta(minutes=minutes)):
            assert pod_transition(pod, state, state, fields=fields)
    pod.refresh_from_db()
    iso = lambda m: (t0 + timedelta(minutes=m)).isoformat()  # noqa: E731
    assert pod.run_sessions == [[(t0 - timedelta(hours=1)).isoformat(), iso(10)], [iso(30), iso(40)]]
    assert pod.stopped_at == t0 + timedelta(minutes=40)  # the latest stop
