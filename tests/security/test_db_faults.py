"""The database briefly unavailable during a tick leaves no inconsistent state.

A connection wrapper makes one statement fail with OperationalError in the middle of a tick
(the metering tick and the capacity store), as a dropped connection would. The tick's
transaction rolls back as a whole; the next tick, with the database back, ends in exactly the
state a fault-free tick would have produced: no double charge, no lost or half-replaced offers.
"""

from __future__ import annotations

import contextlib

import pytest
from django.db import OperationalError, connection

from billing.metering import meter_all
from billing.models import LedgerEntry
from providers.models import Offer
from providers.services import PollResult, adapter_for, capacity_store_many
from provisioner import clock
from workloads.lifecycle import services as wl
from workloads.models import Pod


@contextlib.contextmanager
def database_drops_on(sql_fragment: str, times: int = 1):
    """Fail the next ``times`` statements containing ``sql_fragment`` with OperationalError."""
    left = {"n": times}

    def wrapper(execute, sql, params, many, context):
        if left["n"] and sql_fragment.lower() in sql.lower():
            left["n"] -= 1
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield left


@pytest.mark.django_db(transaction=True)
def test_meter_tick_interrupted_by_the_database_never_double_charges(tenant, project, owner, sandbox):
    w = wl.workload_create(tenant=tenant, project=project, owner=owner, name="metered", image="busybox", gpu_class="T4")
    with clock.frozen() as advance:
        (pod,) = wl.workload_launch(workload=w, enqueue=False)
        wl.pod_provision(pod_id=str(pod.pk))
        advance(minutes=30)
        # the ledger row is written, then the pod's "metered until" update fails
        with database_drops_on('UPDATE "workloads_pod"') as left, pytest.raises(OperationalError):
            meter_all()
        assert left["n"] == 0
        assert LedgerEntry.objects.filter(pod_id=pod.pk).count() == 0  # rolled back with the failed update
        meter_all()  # the database is back
        first = sum(e.amount_usd for e in LedgerEntry.objects.filter(pod_id=pod.pk))
        meter_all()  # and a repeat tick at the same instant adds nothing
        assert sum(e.amount_usd for e in LedgerEntry.objects.filter(pod_id=pod.pk)) == first
        pod = Pod.objects.get(pk=pod.pk)
        assert first > 0 and pod.cost_usd == first


@pytest.mark.django_db(transaction=True)
def test_capacity_store_interrupted_by_the_database_keeps_the_last_good_offers(sandbox):
    before = set(Offer.objects.filter(provider_account=sandbox).values_list("region", "gpu_class", "gpu_count", "spot", "price_usd_per_hour"))
    fresh = adapter_for(sandbox).list_offers()
    with database_drops_on('INSERT INTO "providers_offer"'), pytest.raises(OperationalError):
        capacity_store_many(results=[(sandbox, PollResult(str(sandbox.pk), fresh))])
    after = set(Offer.objects.filter(provider_account=sandbox).values_list("region", "gpu_class", "gpu_count", "spot", "price_usd_per_hour"))
    assert after == before  # the delete of the old snapshot rolled back with the failed insert
    sandbox.refresh_from_db()
    assert sandbox.offer_count == len(before)
    capacity_store_many(results=[(sandbox, PollResult(str(sandbox.pk), fresh))])
    assert Offer.objects.filter(provider_account=sandbox).count() == sandbox.__class__.objects.get(pk=sandbox.pk).offer_count
