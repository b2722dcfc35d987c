"""providers asks about pods through the hook workloads registers (issue 17 §2): it never imports
workloads nor reads workloads' reverse relation on its accounts."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from providers import pod_usage
from providers.models import ProviderAccount
from providers.services import ProviderAccountBusy, account_has_live_pods, provider_account_remove
from tests.factories import ProviderAccountFactory
from workloads.pods.selectors import POD_USAGE

PROVIDERS = Path(__file__).resolve().parents[2] / "providers"


def test_providers_never_imports_workloads_nor_reads_its_pods():
    offenders = []
    for path in PROVIDERS.rglob("*.py"):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "workloads"]
        if re.search(r"""\.pods\b|getattr\([^)]*["']pods["']""", source):
            offenders.append(f"{path.name} reads the reverse relation pods")
    assert offenders == []


def test_workloads_registers_its_answers_at_start_up():
    assert pod_usage.pod_usage() is POD_USAGE


@pytest.fixture
def answers():
    """Register a stand-in for workloads' answers; put the real ones back afterwards."""
    state = {"live": False, "any": False}
    pod_usage.register(pod_usage.PodUsage(live_on_account=lambda account: state["live"],
                                          any_on_account=lambda account: state["any"],
                                          live_billing_in=lambda tenant, currency: False))
    yield state
    pod_usage.register(POD_USAGE)


@pytest.mark.django_db
def test_account_removal_follows_the_registered_answers(answers, tenant):
    account = ProviderAccountFactory(tenant=tenant)
    answers.update(live=True, any=True)
    assert account_has_live_pods(account)
    with pytest.raises(ProviderAccountBusy):
        provider_account_remove(account=account)
    answers.update(live=False)
    assert provider_account_remove(account=account) == "archived"
    other = ProviderAccountFactory(tenant=tenant)
    answers.update(any=False)
    assert provider_account_remove(account=other) == "deleted"
    assert not ProviderAccount.objects.filter(pk=other.pk).exists()
