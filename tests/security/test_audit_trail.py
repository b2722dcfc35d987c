"""The audit log records provider, pod, budget and role changes with who, when and from where."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from billing.budgets import budget_create, budget_update
from providers.services import provider_account_create, provider_account_update
from tenants.models import AuditEvent
from workloads.lifecycle import services as wl


@pytest.mark.django_db
def test_security_relevant_changes_are_audited(tenant, owner, project, sandbox, owner_client):
    acct = provider_account_create(tenant=tenant, kind="sandbox", name="Audited", credentials={"api_key": "s3cr3t-value-123"},
                                   created_by=owner)
    provider_account_update(account=acct, spending_cap_usd=Decimal("50"))
    w = wl.workload_create(tenant=tenant, project=project, owner=owner, name="audited-job", image="busybox", gpu_class="T4")
    (pod,) = wl.workload_launch(workload=w, enqueue=False)
    pod = wl.pod_provision(pod_id=str(pod.pk))
    owner_client.post(reverse("workloads:pod_terminate", args=[pod.pk]))
    b = budget_create(tenant=tenant, name="Q4", amount_usd=Decimal("1000"), webhook_secret="whsec-very-secret")
    budget_update(budget=b, amount_usd=Decimal("2000"))

    events = {e.action: e for e in AuditEvent.objects.filter(tenant=tenant)}
    for action in ("provider.connected", "provider.changed", "pod.launched", "pod.terminated", "budget.created", "budget.changed"):
        assert action in events, f"{action} not audited"
    term = events["pod.terminated"]
    assert term.actor == owner and term.ip == "127.0.0.1" and term.request_id
    assert events["provider.changed"].details["spending_cap_usd"]["to"] == "50"
    assert events["budget.changed"].details["amount_usd"] == {"from": "1000", "to": "2000"}
    # secrets never enter the audit log
    blob = str(list(AuditEvent.objects.values_list("details", flat=True)))
    assert "s3cr3t-value-123" not in blob and "whsec-very-secret" not in blob
    page = owner_client.get(reverse("audit_log")).content.decode()
    assert "pod.terminated" in page and "budget.changed" in page
