"""The pod list (issue 15 §6): sort, filter and pages in the URL, a user column, terminate from a row
with confirmation; and the pod page's phase bar (requested → placed → provisioning → running)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from provisioner import clock
from tenants.models import Project
from workloads.lifecycle import services
from workloads.models import LaunchAttempt, Pod, PodState
from workloads.pods.phases import pod_phases

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
LIST = "/pods/"


def _pod(tenant, project, owner, name, *, state=PodState.RUNNING, price="1.0", minutes_ago=0, account=None) -> Pod:
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name=name, image="img",
                                 gpu_class="A10", gpu_count=1)
    at = clock.now() - timedelta(minutes=minutes_ago)
    return Pod.objects.create(tenant=tenant, workload=w, project=project, gpu_class="A10", gpu_count=1, state=state,
                              requested_at=at, provider_account=account, region="sbx-us-east", country="US",
                              price_usd_per_hour=Decimal(price), price_per_hour=Decimal(price),
                              ended_at=at if state in (PodState.TERMINATED, PodState.FAILED) else None)


def _names(body: str) -> list[str]:
    return re.findall(r'<a class="clip" title="([^"]+)" href="/pods/', body)


@pytest.mark.django_db
def test_filters_sorting_and_pages_live_in_the_url(owner_client, tenant, project, owner, developer, sandbox):
    research = Project.objects.create(tenant=tenant, name="Research")
    _pod(tenant, project, owner, "alpha", price="3.0", minutes_ago=3, account=sandbox)
    _pod(tenant, research, developer, "bravo", price="1.0", minutes_ago=2, account=sandbox)
    _pod(tenant, project, owner, "charlie", state=PodState.TERMINATED, price="2.0", minutes_ago=1)
    body = owner_client.get(LIST).content.decode()
    assert _names(body) == ["charlie", "bravo", "alpha"]  # newest first
    assert ">developer<" in body  # the user column
    # a user name narrows the list to that user, the other filters and the sort kept
    assert 'href="?status=live&amp;sort=name&amp;owner=developer"' in owner_client.get(LIST + "?status=live&sort=name&page=1").content.decode()
    assert _names(owner_client.get(LIST + "?status=live").content.decode()) == ["bravo", "alpha"]
    assert _names(owner_client.get(LIST + "?status=ended").content.decode()) == ["charlie"]
    assert _names(owner_client.get(f"{LIST}?project={research.pk}").content.decode()) == ["bravo"]
    assert _names(owner_client.get(LIST + "?owner=developer").content.decode()) == ["bravo"]
    assert _names(owner_client.get(LIST + "?q=ALP").content.decode()) == ["alpha"]
    assert _names(owner_client.get(LIST + "?sort=name").content.decode()) == ["alpha", "bravo", "charlie"]
    assert _names(owner_client.get(LIST + "?sort=-price").content.decode()) == ["alpha", "charlie", "bravo"]
    # the filter form shows what the URL says (kept on reload), sort links keep the filters
    body = owner_client.get(LIST + "?status=live&sort=name").content.decode()
    assert '<option value="live" selected>' in body and 'href="?status=live&amp;sort=-name"' in body
    # the 3 s refresh asks for the same URL and gets the same filtered rows
    assert 'hx-get="/pods/?status=live&amp;sort=name"' in body
    rows = owner_client.get(LIST + "?status=live&sort=name", headers={"HX-Request": "true"}).content.decode()
    assert _names(rows) == ["alpha", "bravo"] and "<h1" not in rows and 'id="pods"' in rows
    # junk in the URL is ignored, never a 500
    for junk in ("?status=nope&sort=drop+table&project=x&provider=12&page=-4", "?q=" + "x" * 5000):
        assert owner_client.get(LIST + junk).status_code == 200
    assert owner_client.get(LIST + "?provider=%00").status_code == 400  # the input guard's answer to NUL


@pytest.mark.django_db
def test_pages_of_25_keep_the_filters(owner_client, tenant, project, owner):
    for i in range(30):
        _pod(tenant, project, owner, f"job-{i:02d}", minutes_ago=i)
    body = owner_client.get(LIST + "?status=running").content.decode()
    assert len(_names(body)) == 25 and "Page 1 of 2" in body
    assert 'href="?status=running&amp;page=2"' in body
    body = owner_client.get(LIST + "?status=running&page=2").content.decode()
    assert _names(body) == [f"job-{i:02d}" for i in range(25, 30)]
    assert _names(owner_client.get(LIST + "?status=running&page=99").content.decode())[-1] == "job-29"


@pytest.mark.django_db
def test_terminate_from_a_row_asks_and_returns_to_the_filtered_list(owner_client, tenant, project, owner, sandbox,
                                                                     developer, client):
    pod = _pod(tenant, project, owner, "alpha", account=sandbox)
    body = owner_client.get(LIST + "?status=live").content.decode()
    assert 'data-confirm="Terminate alpha? This cannot be undone."' in body
    assert 'name="next" value="/pods/?status=live"' in body
    url = reverse("workloads:pod_terminate", args=[pod.pk])
    response = owner_client.post(url, {"next": "/pods/?status=live"})
    assert response.status_code == 302 and response["Location"] == "/pods/?status=live"
    # anything that is not our pod list goes back to the pod page
    for evil in ("https://evil.example/pods/", "//evil.example/pods/", "/admin/"):
        response = owner_client.post(url, {"next": evil})
        assert response["Location"] == f"/pods/{pod.pk}/"
    # a member who may not provision sees no row action
    from tenants.models import Role
    from tests.factories import make_member
    client.force_login(make_member(tenant, Role.FINANCE, "fin"))
    assert 'data-action="terminate"' not in client.get(LIST).content.decode()


@pytest.mark.django_db
def test_phase_bar_durations_come_from_the_pods_timestamps(owner_client, tenant, project, owner, sandbox):
    with clock.frozen(T0 + timedelta(minutes=5)):
        pod = _pod(tenant, project, owner, "alpha", account=sandbox)
        Pod.objects.filter(pk=pod.pk).update(requested_at=T0, provisioning_at=T0 + timedelta(seconds=5),
                                             started_at=T0 + timedelta(seconds=80))
        LaunchAttempt.objects.create(tenant=tenant, pod=pod, provider_account=sandbox, region="sbx-us-east",
                                     outcome=LaunchAttempt.Outcome.NO_CAPACITY, at=T0 + timedelta(seconds=9))
        LaunchAttempt.objects.create(tenant=tenant, pod=pod, provider_account=sandbox, region="sbx-us-east",
                                     outcome=LaunchAttempt.Outcome.LAUNCHED, at=T0 + timedelta(seconds=20))
        pod.refresh_from_db()
        phases = pod_phases(pod, now=clock.now())
        assert [(p.key, p.duration, p.current) for p in phases] == [
            ("requested", "5 s", False), ("placed", "15 s", False), ("provisioning", "1 min 00 s", False),
            ("running", "3 min 40 s", True)]
        body = owner_client.get(f"/pods/{pod.pk}/").content.decode()
    assert 'id="phase-bar"' in body and 'data-phase="provisioning"' in body and "1 min 00 s" in body
    # a pod still waiting for a worker: only the first phase has started
    with clock.frozen(T0 + timedelta(seconds=30)):
        waiting = _pod(tenant, project, owner, "bravo", state=PodState.REQUESTED)
        Pod.objects.filter(pk=waiting.pk).update(requested_at=T0)
        waiting.refresh_from_db()
        phases = pod_phases(waiting, now=clock.now())
    assert [(p.key, p.duration, p.current) for p in phases] == [
        ("requested", "30 s", True), ("placed", "", False), ("provisioning", "", False), ("running", "", False)]


@pytest.mark.django_db
def test_pod_table_costs_the_same_queries_for_1_and_20_pods(owner_client, tenant, project, owner, developer, sandbox):
    from tests.tables_helpers import assert_same_queries_for_1_and_20_rows

    owners = [owner, developer]
    assert_same_queries_for_1_and_20_rows(
        owner_client, LIST, "pods",
        lambda i: _pod(tenant, project, owners[i % 2], f"job-{i:02d}", account=sandbox if i % 3 else None,
                       state=PodState.TERMINATED if i % 2 else PodState.RUNNING))


@pytest.mark.django_db
def test_another_organizations_pods_and_users_never_show(owner_client, tenant, project, owner, outsider, other_tenant):
    _pod(tenant, project, owner, "ours")
    _pod(other_tenant, other_tenant.projects.get(name="Default"), outsider, "zz-foreign-pod")
    body = owner_client.get(LIST).content.decode()
    assert _names(body) == ["ours"] and "outsider" not in body
    for probe in ("?owner=outsider", f"?project={other_tenant.projects.get(name='Default').pk}"):
        rows = owner_client.get(LIST + probe).content.decode().split("<tbody", 1)[1].split("</tbody>", 1)[0]
        assert "zz-foreign-pod" not in rows and "outsider" not in rows and "No pods match these filters." in rows
    assert 'id="pods-refused"' in owner_client.get(LIST + "?owner=outsider").content.decode()  # said, not dropped


def _headers(body: str) -> list[str]:
    thead = body[body.index("<thead"):body.index("</thead>")]
    return [re.sub(r"<[^>]+>|[↑↓]", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", thead, re.S)]


@pytest.mark.django_db
def test_column_chooser_hides_columns_and_the_choice_lives_in_the_url(owner_client, tenant, project, owner, sandbox):
    _pod(tenant, project, owner, "alpha", account=sandbox)
    full = owner_client.get(LIST).content.decode()
    assert _headers(full)[:4] == ["Status", "Workload", "Project", "User"] and "Cost so far" in _headers(full)
    assert 'id="pods-columns"' in full and 'id="col-cost" checked>' in full
    # the chooser submits the visible ones: Project, User and Cost unticked
    query = "?status=live&sort=name&cols_set=1&cols=place&cols=gpus&cols=market&cols=price&cols=requested"
    body = owner_client.get(LIST + query).content.decode()
    assert _headers(body) == ["Status", "Workload", "Provider / region", "GPUs", "Market", "$/h", "Requested", ""]
    assert _names(body) == ["alpha"]  # the filters still apply
    # kept by the live refresh, the filter form and the sort links; the chooser carries filters and sort
    assert f'hx-get="{LIST}{query.replace("&", "&amp;")}"' in body
    assert '<input type="hidden" name="cols" value="place">' in body and '<input type="hidden" name="cols_set" value="1">' in body
    chooser = body[body.index('id="pods-columns"'):]
    assert '<input type="hidden" name="status" value="live">' in chooser and 'name="sort" value="name"' in chooser
    assert 'id="col-project">' in chooser and 'id="col-place" checked>' in chooser  # unticked, ticked
    rows = owner_client.get(LIST + query, headers={"HX-Request": "true"}).content.decode()
    assert "Cost so far" not in _headers(rows)
    # status and workload always show; unknown names are ignored; unticking everything hides the optional ones
    body = owner_client.get(LIST + "?cols_set=1&cols=state&cols=bogus").content.decode()
    assert _headers(body) == ["Status", "Workload", ""]
