"""Isolation proven over every URL pattern.

Every named URL of the project is enumerated. Each one that takes an object is requested (GET
and POST) by the owner of organization A with the ids of organization B's objects: the answer
must be 404. Each URL is also requested by a viewer of A on A's own objects: where the viewer's
role lacks the capability the answer must be 403. A new URL that this table does not cover
fails ``test_every_url_is_covered``.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from providers.services import capacity_poll, invoice_rate_set
from tenants.models import Membership, Role
from tests.factories import SandboxAccountFactory, make_member, make_tenant
from workloads import services as wl
from workloads.models import Recipe, RecipeVersion

# XTS: ISO 4217's code for testing, the foreign organization's own invoice rate
FOREIGN_MARKERS = ("zz-foreign-workload", "Foreign Cloud", "ForeignProject", "Foreign Budget", "zz-foreign-recipe", "XTS",
                   "Foreign saved view")

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
    "workloads:workload_detail": lambda w: {"pk": w["workload"].pk},
    "workloads:workload_clone": lambda w: {"pk": w["workload"].pk},
    "workloads:workload_relaunch": lambda w: {"pk": w["workload"].pk},
    "workloads:workload_stop": lambda w: {"pk": w["workload"].pk},
    "workloads:workload_move": lambda w: {"pk": w["workload"].pk},
    "workloads:recipe_launch": lambda w: {"slug": w["recipe"].slug},
    "workloads:recipe_preview": lambda w: {"slug": w["recipe"].slug},
    "workloads:recipe_edit": lambda w: {"slug": w["recipe"].slug},
    "billing:budget_edit": lambda w: {"pk": w["budget"].pk},
    "billing:rate_clear": lambda w: {"pk": w["rate"].pk},
    "billing:saved_view_delete": lambda w: {"pk": w["saved_view"].pk},
    "member_role": lambda w: {"pk": w["membership"].pk},
    "member_remove": lambda w: {"pk": w["membership"].pk},
    "member_grant": lambda w: {"pk": w["membership"].pk, "project_pk": w["project"].pk},
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
}

# Outside tenancy, each with the reason and where it is tested
EXEMPT = {
    "login": "public login page",
    "logout": "ends the caller's own session",
    "workloads:agent_script": "the public agent script download; no tenant data",
    "workloads:agent_heartbeat": "pod-token authenticated, not session; foreign/forged tokens: tests/workloads/test_heartbeat*.py",
}

# URLs a viewer (read-only member) must be refused with 403, on their own organization's objects
VIEWER_FORBIDDEN = {
    "providers:connect", "providers:edit", "providers:credentials", "providers:poll", "providers:remove",
    "providers:wizard_step", "providers:wizard_cancel",
    "workloads:launch", "workloads:pod_terminate", "workloads:workload_clone", "workloads:workload_relaunch",
    "workloads:workload_stop", "workloads:workload_move", "workloads:recipe_author", "workloads:recipe_edit",
    "workloads:recipe_launch", "workloads:secrets",
    "billing:spend", "billing:export", "billing:budgets", "billing:budget_edit", "billing:rates", "billing:rate_clear",
    "billing:saved_views", "billing:saved_view_save", "billing:saved_view_delete", "billing:reconciliation",
    "members", "member_role", "member_remove", "member_grant", "audit_log",
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
    project = tenant.projects.create(name=f"{prefix}Project")
    from guardian.shortcuts import assign_perm

    for m in tenant.memberships.all():
        if m.role in (Role.OWNER, Role.ADMIN, Role.DEVELOPER):
            assign_perm("tenants.provision_compute", m.user, project)
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
    return {"account": account, "project": project, "workload": workload, "pod": pod, "recipe": recipe,
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
