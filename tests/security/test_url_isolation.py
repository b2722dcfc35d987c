"""Isolation proven over every URL pattern.

Every named URL of the project is enumerated. Each one that takes an object is requested (GET
and POST) by the owner of organization A with the ids of organization B's objects: the answer
must be 404. Each URL is also requested by a viewer of A on A's own objects: where the viewer's
role lacks the capability the answer must be 403. A new URL that this table does not cover
fails ``test_every_url_is_covered``.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from providers.services import capacity_poll, invoice_rate_set
from provisioner import clock
from tenants.models import Membership, Role
from tenants.permissions import MANAGE_BUDGETS, PROVISION, VIEW_SPEND
from tenants.services import project_create
from tests.factories import SandboxAccountFactory, make_member, make_tenant
from workloads.lifecycle import services as wl
from workloads.models import Recipe, RecipeVersion

# XTS: ISO 4217's code for testing, the foreign organization's own invoice rate
FOREIGN_MARKERS = ("zz-foreign-workload", "Foreign Cloud", "ForeignProject", "Foreign Budget", "zz-foreign-recipe", "XTS",
                   "Foreign saved view", "foreign@invited.example")

# URL name -> how to fill its parameters from a world (dict of objects of one organization)
OBJECT_URLS = {
    "providers:detail": lambda w: {"pk": w["account"].pk},
    "providers:edit": lambda w: {"pk": w["account"].pk},
    "providers:credentials": lambda w: {"pk": w["account"].pk},
    "providers:poll": lambda w: {"pk": w["account"].pk},
    "providers:remove": lambda w: {"pk": w["account"].pk},
    "workloads:pod_detail": lambda w: {"pk": w["pod"].pk},
    "workloads:pod_terminate": lambda w: {"pk": w["pod"].pk},
    "workloads:pod_utilization": lambda w: {"pk": w["pod"].pk},
    "workloads:pod_logs": lambda w: {"pk": w["pod"].pk},
    "workloads:workload_detail": lambda w: {"pk": w["workload"].pk},
    "workloads:workload_clone": lambda w: {"pk": w["workload"].pk},
    "workloads:workload_relaunch": lambda w: {"pk": w["workload"].pk},
    "workloads:workload_stop": lambda w: {"pk": w["workload"].pk},
    "workloads:workload_move": lambda w: {"pk": w["workload"].pk},
    "gateway:cutover_edit": lambda w: {"pk": w["workload"].pk},
    "workloads:recipe_launch": lambda w: {"slug": w["recipe"].slug},
    "workloads:recipe_preview": lambda w: {"slug": w["recipe"].slug},
    "workloads:recipe_edit": lambda w: {"slug": w["recipe"].slug},
    "workloads:recipe_pin": lambda w: {"slug": w["recipe"].slug},  # POST: pin for oneself; another org's recipe is a 404
    "billing:budget_edit": lambda w: {"pk": w["budget"].pk},
    "billing:rate_clear": lambda w: {"pk": w["rate"].pk},
    "billing:saved_view_delete": lambda w: {"pk": w["saved_view"].pk},
    "member_role": lambda w: {"pk": w["membership"].pk},
    "member_remove": lambda w: {"pk": w["membership"].pk},
    "member_grant": lambda w: {"pk": w["membership"].pk, "project_pk": w["project"].pk},
    "invitation_revoke": lambda w: {"pk": w["invitation"].pk},
    # wizard state lives in the user's session: another user's (or an unknown) wizard id is a 404
    "providers:wizard_step": lambda w: {"wizard_id": w["wizard_id"], "step": "credentials"},
    "providers:wizard_cancel": lambda w: {"wizard_id": w["wizard_id"]},
}

# URLs without objects: each must answer without showing another organization's data
LIST_URLS = {
    "home", "switch_tenant", "providers:list", "providers:connect", "providers:capacity", "billing:spend",
    "billing:export", "billing:budgets", "billing:rates", "billing:saved_views", "billing:saved_view_save",
    "billing:alerts", "billing:alerts_badge", "billing:reconciliation", "workloads:pod_list",
    "workloads:launch", "workloads:launch_preview", "workloads:recipe_catalog", "workloads:recipe_author",
    "workloads:secrets", "workloads:workload_list", "workloads:placement_preview", "members", "audit_log",
    "billing:digest",  # POST-only: the member's own digest subscription
}

# the list pages' table filters (provisioner/tables.py) -> the query naming another organization's
# objects: the filter's choices are the member's own organization's, so such a value matches nothing
TABLE_FILTER_PROBES = {
    "workloads:pod_list": lambda w: {"project": w["project"].pk, "provider": w["account"].pk, "owner": "owner-b"},
    "workloads:workload_list": lambda w: {"project": w["project"].pk, "owner": "owner-b"},
    "providers:capacity": lambda w: {"provider": w["account"].pk},
    "audit_log": lambda w: {"actor": "owner-b"},
    "billing:alerts": lambda w: {"q": "Foreign"},
}

# Outside tenancy, each with the reason and where it is tested
EXEMPT = {
    "login": "public login page",
    "logout": "ends the caller's own session",
    "workloads:agent_script": "the public agent script download; no tenant data",
    "invitation_accept": "authenticated by its signed, expiring token, not the session: tests/tenants/test_invitations.py",
    "workloads:agent_heartbeat": "pod-token authenticated, not session; foreign/forged tokens: tests/workloads/test_heartbeat*.py",
}

# URLs a viewer (read-only member) must be refused with 403, on their own organization's objects
VIEWER_FORBIDDEN = {
    "providers:connect", "providers:edit", "providers:credentials", "providers:poll", "providers:remove",
    "providers:wizard_step", "providers:wizard_cancel",
    "workloads:launch", "workloads:pod_terminate", "workloads:workload_clone", "workloads:workload_relaunch",
    "workloads:workload_stop", "workloads:workload_move", "gateway:cutover_edit", "workloads:recipe_author", "workloads:recipe_edit",
    "workloads:recipe_launch", "workloads:secrets",
    "billing:spend", "billing:export", "billing:budgets", "billing:budget_edit", "billing:rates", "billing:rate_clear",
    "billing:saved_views", "billing:saved_view_save", "billing:saved_view_delete", "billing:reconciliation",
    "members", "member_role", "member_remove", "member_grant", "invitation_revoke", "audit_log",
}


def _refused(name: str, resp, status: int) -> bool:
    if resp.status_code == status:
        return True
    # wizard state is per session: an id that is not in this session starts a new wizard
    return name.startswith("providers:wizard") and resp.status_code == 302 and resp.url.rstrip("/") in ("/providers/connect", "/providers")


# pages a viewer may read (a recipe's description and parameters) whose action (POST) is refused
VIEWER_READ_ONLY = {"workloads:launch", "workloads:recipe_launch"}


def all_url_names() -> dict[str, object]:
    names: dict[str, object] = {}

    def walk(resolver, namespace=None):
        for p in resolver.url_patterns:
            if isinstance(p, URLResolver):
                if p.app_name == "admin":
                    continue  # Django admin: staff-only, its own permission system
                walk(p, p.namespace or namespace)
            elif isinstance(p, URLPattern) and p.name:
                names[f"{namespace}:{p.name}" if namespace else p.name] = p

    walk(get_resolver())
    return names


def test_every_url_is_covered():
    names = set(all_url_names())
    covered = set(OBJECT_URLS) | LIST_URLS | set(EXEMPT)
    missing = sorted(names - covered)
    assert not missing, f"URL patterns with no isolation coverage (add them to this test): {missing}"
    stale = sorted(covered - names)
    assert not stale, f"covered names that no longer exist: {stale}"


def _world(tenant, owner, prefix=""):
    account = SandboxAccountFactory(tenant=tenant, name=f"{prefix}Cloud")
    capacity_poll(accounts=[account])
    project = project_create(tenant=tenant, name=f"{prefix}Project")  # grants each member their role's capabilities
    workload = wl.workload_create(tenant=tenant, project=project, owner=owner, name=f"{prefix.lower().replace(' ', '-')}zz-workload"
                                  if not prefix else "zz-foreign-workload", image="busybox", gpu_class="T4")
    (pod,) = wl.workload_launch(workload=workload, enqueue=False)
    pod = wl.pod_provision(pod_id=str(pod.pk))
    recipe = Recipe.objects.create(tenant=tenant, slug="zz-foreign-recipe" if prefix else "own-recipe",
                                   name="zz-foreign-recipe" if prefix else "Own recipe", category="custom")
    RecipeVersion.objects.create(recipe=recipe, version=1, image="busybox", parameters=[], defaults={"gpu_class": "T4", "gpu_count": 1},
                                 template={"command": ["sleep", "60"]})
    from billing.budgets import budget_create

    budget = budget_create(tenant=tenant, name=f"{prefix}Budget", amount_usd=Decimal("100"))
    rate = invoice_rate_set(tenant=tenant, currency="XTS" if prefix else "EUR", usd_per_unit=Decimal("1.234567"))
    from billing.reports import saved_view_save

    saved_view = saved_view_save(tenant=tenant, user=owner, name=f"{prefix}saved view" if prefix else "Own view",
                                 query="range=30d&group=project")
    membership = Membership.objects.filter(tenant=tenant).exclude(user=owner).first() or Membership.objects.get(tenant=tenant, user=owner)
    from tenants.models import Invitation

    invitation = Invitation.objects.create(tenant=tenant, email=f"{prefix.strip().lower() or 'own'}@invited.example",
                                           role=Role.DEVELOPER, created_at=clock.now())
    return {"invitation": invitation, "account": account, "project": project, "workload": workload, "pod": pod, "recipe": recipe,
            "budget": budget, "rate": rate, "saved_view": saved_view, "membership": membership, "wizard_id": uuid.uuid4().hex}


@pytest.fixture
def worlds(db):
    a = make_tenant("Acme", "acme")
    b = make_tenant("Globex", "globex")
    owner_a = make_member(a, Role.OWNER, "owner-a")
    viewer_a = make_member(a, Role.VIEWER, "viewer-a")
    owner_b = make_member(b, Role.OWNER, "owner-b")
    make_member(b, Role.DEVELOPER, "dev-b")
    return {"own": _world(a, owner_a), "foreign": _world(b, owner_b, "Foreign "), "owner": owner_a, "viewer": viewer_a}


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(OBJECT_URLS))
def test_foreign_objects_are_404(client, worlds, name):
    client.force_login(worlds["owner"])
    url = reverse(name, kwargs=OBJECT_URLS[name](worlds["foreign"]))
    resp = client.post(url)
    assert _refused(name, resp, 404), f"POST {url} as an outsider gave {resp.status_code}"
    resp = client.get(url)
    # POST-only endpoints answer 405 to any GET, whoever's id it carries: no existence leak
    assert _refused(name, resp, 404) or resp.status_code == 405, f"GET {url} as an outsider gave {resp.status_code}"
    # nothing of theirs changed
    pod = worlds["foreign"]["pod"]
    pod.refresh_from_db()
    assert pod.state == "running"
    rate = worlds["foreign"]["rate"]
    assert rate.__class__.objects.filter(pk=rate.pk, usd_per_unit=rate.usd_per_unit).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(LIST_URLS))
def test_list_pages_do_not_leak(client, worlds, name):
    client.force_login(worlds["owner"])
    resp = client.get(reverse(name))
    assert resp.status_code in (200, 302, 405), f"{name}: {resp.status_code}"
    body = resp.content.decode(errors="replace")
    for marker in FOREIGN_MARKERS:
        assert marker not in body, f"{name} shows {marker!r} of another organization"


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(TABLE_FILTER_PROBES))
def test_table_filters_naming_foreign_objects_find_nothing(client, worlds, name):
    client.force_login(worlds["owner"])
    for param, value in TABLE_FILTER_PROBES[name](worlds["foreign"]).items():
        for query in ({param: value}, {param: value, "sort": "-name", "page": "2"}):
            for headers in ({}, {"HX-Request": "true"}):  # the page and its htmx fragment
                resp = client.get(reverse(name), query, headers=headers)
                assert resp.status_code == 200, (name, query, resp.status_code)
                body = resp.content.decode(errors="replace")
                for marker in (*FOREIGN_MARKERS, "Globex", "owner-b", "Foreign Project"):
                    # the query itself is echoed in the page's own links: look at the table's rows only
                    rows = body.split("<tbody", 1)[-1].split("</tbody>", 1)[0]
                    assert marker not in rows, f"{name}?{param}=... shows {marker!r} of another organization"


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(VIEWER_FORBIDDEN))
def test_viewer_lacking_the_permission_gets_403(client, worlds, name):
    client.force_login(worlds["viewer"])
    kwargs = OBJECT_URLS[name](worlds["own"]) if name in OBJECT_URLS else {}
    if name.startswith("providers:wizard"):
        kwargs = {k: v for k, v in kwargs.items()}
    url = reverse(name, kwargs=kwargs)
    methods = ("post",) if name in VIEWER_READ_ONLY else ("get", "post")
    for method in methods:
        resp = getattr(client, method)(url)
        assert resp.status_code in (403, 405), f"{method.upper()} {url} as a viewer gave {resp.status_code}"
    if name in VIEWER_READ_ONLY:
        assert client.get(url).status_code == 200  # readable, but the launch itself was refused above
    assert worlds["own"]["pod"].__class__.objects.get(pk=worlds["own"]["pod"].pk).state == "running"


# --- per-project grants (issue 16 §1) ----------------------------------------------------------------
# Role × per-project grant is one decision (tenants.access.project_scope). For each project-scoped URL:
# the capability whose grant on the world's project is revoked, through the Members page's own toggle,
# and how the URL is reached. After the revocation the same member is refused; after re-granting, served
# again - access is lost and restored by the grant itself, not by a row being removed.
PROJECT_SCOPED_OBJECTS = {
    "workloads:pod_terminate": (PROVISION, lambda w: {"pk": w["pod"].pk}),
    "workloads:workload_clone": (PROVISION, lambda w: {"pk": w["workload"].pk}),
    "workloads:workload_relaunch": (PROVISION, lambda w: {"pk": w["workload"].pk}),
    "workloads:workload_stop": (PROVISION, lambda w: {"pk": w["workload"].pk}),
    "workloads:workload_move": (PROVISION, lambda w: {"pk": w["workload"].pk}),
    "billing:budget_edit": (MANAGE_BUDGETS, lambda w: {"pk": w["project_budget"].pk}),
}
# lists and forms: the project (its option, its spend, its budgets) must vanish or the request be refused
PROJECT_SCOPED_LISTS = {
    "workloads:launch": PROVISION, "workloads:recipe_launch": PROVISION, "workloads:placement_preview": PROVISION,
    "billing:spend": VIEW_SPEND, "billing:export": VIEW_SPEND, "billing:budgets": VIEW_SPEND,
    "billing:alerts": VIEW_SPEND, "billing:alerts_badge": VIEW_SPEND,
}
# the rest, each with why a per-project grant does not apply
NOT_PROJECT_SCOPED = {
    "workloads:pod_detail": "reading a pod is VIEW, which no grant narrows: every member sees every pod",
    "workloads:pod_utilization": "reading (VIEW, tenant-wide)", "workloads:pod_logs": "reading (VIEW, tenant-wide)",
    "workloads:workload_detail": "reading (VIEW, tenant-wide)",
    "workloads:pod_list": "reading (VIEW, tenant-wide)", "workloads:workload_list": "reading (VIEW, tenant-wide)",
    "workloads:launch_preview": "renders the launch form's spec; launching is refused by workloads:launch",
    "workloads:recipe_preview": "renders the launch form's spec; launching is refused by workloads:recipe_launch",
    "billing:saved_views": "a saved view is a query string; what it shows is billing:spend's, restricted",
    "billing:saved_view_save": "stores a query string; see billing:saved_views",
    "billing:saved_view_delete": "see billing:saved_views",
}


def _grant(client, world, capability: str, granted: bool) -> None:
    url = reverse("member_grant", kwargs={"pk": world["member"].pk, "project_pk": world["project"].pk})
    assert client.post(url, {"capability": capability, "granted": "1" if granted else "0"}).status_code == 302


def test_every_project_scoped_url_is_covered():
    """Every URL acting on a pod, workload or budget, and every launch or spend page, is in one table."""
    touching = {n for n in OBJECT_URLS if n.startswith(("workloads:pod", "workloads:workload", "billing:budget",
                                                         "billing:saved"))}
    touching |= {n for n in LIST_URLS if n.startswith(("workloads:launch", "workloads:placement", "workloads:pod",
                                                        "workloads:workload", "billing:spend", "billing:export",
                                                        "billing:budget", "billing:saved", "billing:alert"))}
    touching |= {"workloads:recipe_launch", "workloads:recipe_preview"}
    covered = set(PROJECT_SCOPED_OBJECTS) | set(PROJECT_SCOPED_LISTS) | set(NOT_PROJECT_SCOPED)
    assert not sorted(touching - covered), f"project-scoped URLs without a grant test: {sorted(touching - covered)}"


@pytest.fixture
def granted_world(worlds):
    """The own world, with a budget and an alert of its project and a finished pod's spend there."""
    from billing.budgets import budget_create
    from billing.models import BudgetAlert
    from billing.rollups import rollup_dirty
    from tests.billing.helpers import account, make_pod, run_timeline
    from workloads.models import PodState

    w = worlds["own"]
    tenant = w["project"].tenant
    w["project_budget"] = budget_create(tenant=tenant, name="zz-project-budget", amount_usd=Decimal("500"), project=w["project"])
    BudgetAlert.objects.create(tenant=tenant, budget=w["project_budget"], period_start=clock.now(), threshold=50,
                               spent_usd=Decimal("250"), limit_usd=Decimal("500"), message="zz-project-alert",
                               created_at=clock.now())
    pod = make_pod(tenant, w["project"], worlds["owner"], account(tenant, name="Billing"), price="5.00", name="zz-spend")
    start = (clock.now() - timedelta(days=2)).replace(hour=6, minute=0, second=0, microsecond=0)
    run_timeline(pod, start, [(timedelta(0), PodState.RUNNING), (timedelta(hours=2), PodState.TERMINATED)],
                 meter_every=timedelta(hours=1))
    rollup_dirty()
    w["member"] = Membership.objects.get(tenant=tenant, user=worlds["owner"])
    return w


def _project_objects_shown(client, w, name: str):
    """(status, whether the world's project shows up) for one list/form URL."""
    pk = str(w["project"].pk)
    if name == "workloads:launch":
        r = client.get(reverse(name))
        return r.status_code, f'value="{pk}"' in r.content.decode()
    if name == "workloads:recipe_launch":
        r = client.get(reverse(name, kwargs={"slug": w["recipe"].slug}))
        return r.status_code, f'value="{pk}"' in r.content.decode()
    if name == "workloads:placement_preview":
        r = client.get(reverse(name), {"project": pk, "gpu_class": "T4", "gpu_count": "1"})
        return r.status_code, r.status_code == 200
    if name == "billing:spend":
        r = client.get(reverse(name), {"range": "7d", "group": "project"})
        return r.status_code, f'value="{pk}"' in r.content.decode()
    if name == "billing:export":
        r = client.get(reverse(name), {"range": "7d", "group": "project"})
        if r.status_code != 200:
            return r.status_code, False
        rows = list(csv.DictReader(io.StringIO(r.content.decode())))
        return r.status_code, any(row["project"] == w["project"].name and Decimal(row["amount_usd"]) > 0 for row in rows)
    if name == "billing:budgets":
        r = client.get(reverse(name))
        return r.status_code, "zz-project-budget" in r.content.decode()
    if name == "billing:alerts":
        r = client.get(reverse(name))
        return r.status_code, "zz-project-alert" in r.content.decode()
    if name == "billing:alerts_badge":
        r = client.get(reverse(name))
        return r.status_code, ">1 alert<" in r.content.decode()
    raise AssertionError(name)


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(PROJECT_SCOPED_LISTS))
def test_revoked_grant_hides_the_project_from_lists_and_forms(client, granted_world, worlds, name):
    client.force_login(worlds["owner"])
    status, shown = _project_objects_shown(client, granted_world, name)
    assert status == 200 and shown, f"{name}: the granted project is not shown ({status})"
    _grant(client, granted_world, PROJECT_SCOPED_LISTS[name], False)
    status, shown = _project_objects_shown(client, granted_world, name)
    assert status in (200, 403) and not shown, f"{name}: still shows the project after its grant was revoked"
    _grant(client, granted_world, PROJECT_SCOPED_LISTS[name], True)
    assert _project_objects_shown(client, granted_world, name) == (200, True)


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(PROJECT_SCOPED_OBJECTS))
def test_revoked_grant_refuses_every_action_on_the_project(client, granted_world, worlds, name):
    client.force_login(worlds["owner"])
    capability, kwargs = PROJECT_SCOPED_OBJECTS[name]
    url = reverse(name, kwargs=kwargs(granted_world))
    _grant(client, granted_world, capability, False)
    for method in ("get", "post"):
        resp = getattr(client, method)(url)
        assert resp.status_code in (403, 405), f"{method.upper()} {url} after revoking {capability}: {resp.status_code}"
    pod = granted_world["pod"]
    pod.refresh_from_db()
    assert pod.state == "running"
    assert granted_world["workload"].__class__.objects.filter(tenant=pod.tenant).count() == 2  # nothing cloned
    _grant(client, granted_world, capability, True)
    resp = client.post(url)
    assert resp.status_code not in (403, 404), f"POST {url} after re-granting {capability}: {resp.status_code}"


@pytest.mark.django_db
def test_revoked_launch_grant_refuses_the_launch_itself(client, granted_world, worlds):
    client.force_login(worlds["owner"])
    _grant(client, granted_world, PROVISION, False)
    data = {"name": "zz-sneaky", "project": str(granted_world["project"].pk), "image": "busybox", "gpu_class": "T4",
            "gpu_count": "1", "lifecycle": "job", "replicas": "1", "overlap_policy": "skip", "networking": "internal"}
    resp = client.post(reverse("workloads:launch"), data)
    assert resp.status_code == 200 and "valid choice" in resp.content.decode()
    assert not granted_world["workload"].__class__.objects.filter(name="zz-sneaky").exists()


@pytest.mark.django_db
def test_whole_organization_budget_needs_the_grant_on_every_project(client, granted_world, worlds):
    client.force_login(worlds["owner"])
    url = reverse("billing:budget_edit", kwargs={"pk": granted_world["budget"].pk})  # project=None
    assert client.get(url).status_code == 200
    _grant(client, granted_world, MANAGE_BUDGETS, False)  # on one project only
    assert client.get(url).status_code == 403
    assert "Whole organization" not in client.get(reverse("billing:budgets")).content.decode()


@pytest.mark.django_db
def test_pages_offer_no_action_the_grant_no_longer_allows(client, granted_world, worlds):
    """No UI claims a control that does nothing: once the grant is revoked the pod page shows no
    Terminate / Move, the workload page no Clone, the budgets page no Edit for that project."""
    client.force_login(worlds["owner"])
    pod_url = reverse("workloads:pod_detail", kwargs={"pk": granted_world["pod"].pk})
    wl_url = reverse("workloads:workload_detail", kwargs={"pk": granted_world["workload"].pk})
    edit = reverse("billing:budget_edit", kwargs={"pk": granted_world["project_budget"].pk})
    assert 'id="terminate"' in client.get(pod_url).content.decode() and 'id="clone"' in client.get(wl_url).content.decode()
    assert edit in client.get(reverse("billing:budgets")).content.decode()
    _grant(client, granted_world, PROVISION, False)
    _grant(client, granted_world, MANAGE_BUDGETS, False)
    pod_page = client.get(pod_url).content.decode()
    assert 'id="terminate"' not in pod_page and 'id="move-link"' not in pod_page
    assert 'id="clone"' not in client.get(wl_url).content.decode()
    assert edit not in client.get(reverse("billing:budgets")).content.decode()
