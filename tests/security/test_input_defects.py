"""Issue 16 §3: each measured input defect, as a test (every one of them was a 500 or a wrong
refusal on the main branch before the fix)."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import DatabaseError
from django.test import Client
from django.urls import reverse

from billing.models import Budget
from provisioner import inputs
from tenants.models import AuditEvent
from workloads.models import Pod, Recipe, RegistryCredential, UtilizationSample, Workload

RAW_LAUNCH = {"name": "raw", "image": "pytorch", "command": "python -c 'print(1)'", "env": "A=1", "gpu_class": "L4",
              "gpu_count": "1", "lifecycle": "job", "replicas": "1", "overlap_policy": "skip", "networking": "internal"}


def _author_data(**over):
    data = {"name": "My trainer", "slug": "my-trainer", "category": "training", "image": "nvcr.io/acme/trainer:1.0",
            "ngc_api_key": "", "command": "python train.py", "args": "", "env": "", "ports": "",
            "volumes": "", "parameters": "[]", "gpu_class": "A10", "gpu_count": "1", "min_gpu_count": "1",
            "max_gpu_count": "2", "lifecycle": "job"}
    data.update(over)
    return data


def _budget_data(**over):
    data = {"name": "Team", "period": "month", "amount_usd": "100", "soft_thresholds": "50, 100",
            "email_alerts": "on", "hard_limit": "on"}
    data.update(over)
    return data


# --- 3.1 heartbeat text the database cannot store -----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("error", ["gpu\u0000fault", "\ud800", "ok\udfff"])
def test_heartbeat_refuses_nul_and_lone_surrogates(tenant, project, owner, sandbox, error):
    from tests.workloads.telemetry_helpers import running_pod
    from workloads.autoshutdown import telemetry

    cache.clear()
    pod = running_pod(tenant, project, owner)
    token = telemetry.agent_token_issue(pod=pod)
    # json.dumps writes the escapes ("\u0000", "\ud800"), exactly what an agent could send
    body = json.dumps({"gpus": [{"index": 0, "util": 1.0}], "error": error})
    r = Client().post(reverse("workloads:agent_heartbeat", args=[pod.pk]), data=body, content_type="application/json",
                      HTTP_AUTHORIZATION=f"Bearer {token}")
    assert r.status_code == 400, r.content
    assert not UtilizationSample.objects.filter(pod=pod).exists()
    assert Pod.objects.get(pk=pod.pk).agent_error == ""


# --- 3.2 X-Request-ID and the launch's audit in one transaction ----------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["x" * 100, "id with spaces<script>", "abc\u00e9"])
def test_long_or_odd_request_id_is_replaced_and_launch_is_audited(client, developer, project, sandbox, header,
                                                                    django_capture_on_commit_callbacks):
    client.force_login(developer)
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(reverse("workloads:launch"), dict(RAW_LAUNCH, project=str(project.pk)), HTTP_X_REQUEST_ID=header)
    assert r.status_code == 302
    event = AuditEvent.objects.get(action="pod.launched")
    assert event.request_id and len(event.request_id) <= 64 and event.request_id != header[:64]


@pytest.mark.django_db
def test_a_clean_request_id_is_kept(client, developer, project, sandbox):
    client.force_login(developer)
    client.post(reverse("workloads:launch"), dict(RAW_LAUNCH, project=str(project.pk)), HTTP_X_REQUEST_ID="req-42.a:b")
    assert AuditEvent.objects.get(action="pod.launched").request_id == "req-42.a:b"


@pytest.mark.django_db
def test_launch_and_its_audit_are_one_transaction(developer, project, sandbox, django_capture_on_commit_callbacks):
    """The audit write fails: nothing of the launch may stay, and no provisioning task may be sent."""
    client = Client(raise_request_exception=False)
    client.force_login(developer)
    with mock.patch("workloads.lifecycle.services.audit_record", side_effect=DatabaseError("audit down")), \
            django_capture_on_commit_callbacks(execute=False) as callbacks:
        r = client.post(reverse("workloads:launch"), dict(RAW_LAUNCH, project=str(project.pk)))
    assert r.status_code == 500
    assert not Workload.objects.exists() and not Pod.objects.exists()
    assert callbacks == []  # the provisioning task is enqueued on commit only


# --- 3.3 webhook URL length ------------------------------------------------------------------------


@pytest.mark.django_db
def test_long_webhook_url_is_an_inline_error(client, finance):
    client.force_login(finance)
    url = "https://hooks.example.com/" + "a" * 2100
    r = client.post(reverse("billing:budgets"), _budget_data(webhook_url=url))
    assert r.status_code == 200
    assert "at most" in r.content.decode().lower() and not Budget.objects.exists()


@pytest.mark.django_db
def test_webhook_url_of_300_characters_is_saved(client, finance, settings):
    settings.OUTBOUND_RESOLVER = lambda host: ["93.184.216.34"]  # a public address (resolver stub)
    client.force_login(finance)
    url = "https://hooks.example.com/" + "a" * 274
    r = client.post(reverse("billing:budgets"), _budget_data(webhook_url=url))
    assert r.status_code == 302, r.content.decode()[-3000:]
    assert Budget.objects.get().webhook_url == url


# --- 3.4 / 3.5 recipe author ------------------------------------------------------------------------


@pytest.mark.django_db
def test_recipe_with_a_long_name_and_an_ngc_key_saves(client, developer, tenant):
    client.force_login(developer)
    name = "N" * 115
    r = client.post(reverse("workloads:recipe_author"), _author_data(name=name, ngc_api_key="nvapi-SECRET-KEY"))
    assert r.status_code == 302, r.content.decode()[-2000:]
    cred = RegistryCredential.objects.get(tenant=tenant)
    assert len(cred.name) <= 120 and cred.secret == "nvapi-SECRET-KEY"


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [25, 2000, 100000])
def test_deeply_nested_parameters_are_an_inline_error(client, developer, depth):
    client.force_login(developer)
    r = client.post(reverse("workloads:recipe_author"), _author_data(parameters="[" * depth + "]" * depth))
    assert r.status_code == 200
    assert "nested deeper" in r.content.decode()
    assert not Recipe.objects.filter(builtin=False).exists()


@pytest.mark.django_db
def test_refused_recipe_leaves_no_credential_behind(client, developer, tenant):
    client.force_login(developer)
    data = _author_data(ngc_api_key="nvapi-SECRET-KEY")
    assert client.post(reverse("workloads:recipe_author"), data).status_code == 302
    # the same slug again: refused by the service after the key's credential was created
    r = client.post(reverse("workloads:recipe_author"), dict(data, ngc_api_key="nvapi-OTHER-KEY"))
    assert r.status_code == 200
    assert RegistryCredential.objects.filter(tenant=tenant).count() == 1


# --- 3.6 non-finite prices ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-Infinity", "1e999999", "-1e999999"])
def test_placement_preview_ignores_non_finite_prices(client, developer, sandbox, value):
    client.force_login(developer)
    r = client.get(reverse("workloads:placement_preview"), {"gpu_class": "L4", "max_price_per_hour": value})
    assert r.status_code == 200


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "1e999999", "abc", ""])
def test_finite_decimal_refuses_non_finite(value):
    assert inputs.finite_decimal(value) is None


# --- 3.7 a charset Python cannot decode a form with ------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("charset", ["utf-16", "utf-32", "no-such-charset"])
def test_undecodable_charset_is_a_400_from_our_middleware(developer, charset):
    for logged_in in (False, True):
        c = Client(raise_request_exception=False)
        if logged_in:
            c.force_login(developer)
        url = reverse("login") if not logged_in else reverse("workloads:launch")
        r = c.generic("POST", url, b"username=a&password=b",
                      content_type=f"application/x-www-form-urlencoded; charset={charset}")
        assert r.status_code == 400, (url, r.status_code)
        assert b"charset" in r.content


# --- 3.8 the stated minimum budget --------------------------------------------------------------------


@pytest.mark.django_db
def test_budget_of_one_cent_is_accepted(client, finance):
    client.force_login(finance)
    r = client.post(reverse("billing:budgets"), _budget_data(amount_usd="0.01"))
    assert r.status_code == 302, r.content.decode()[-2000:]
    assert str(Budget.objects.get().amount_usd) == "0.01"


# --- 3.9 documented size limits --------------------------------------------------------------------------


@pytest.mark.django_db
def test_env_value_too_large_is_an_inline_error(client, developer, project):
    client.force_login(developer)
    big = "A=" + "x" * (inputs.MAX_ENV_VALUE_CHARS + 1)
    r = client.post(reverse("workloads:launch"), dict(RAW_LAUNCH, project=str(project.pk), env=big))
    assert r.status_code == 200 and "at most" in r.content.decode().lower()
    assert not Workload.objects.exists()


@pytest.mark.django_db
def test_too_many_env_variables_is_an_inline_error(client, developer, project):
    client.force_login(developer)
    env = "\n".join(f"V{i}=1" for i in range(inputs.MAX_ENV_VARS + 1))
    r = client.post(reverse("workloads:launch"), dict(RAW_LAUNCH, project=str(project.pk), env=env))
    assert r.status_code == 200 and f"at most {inputs.MAX_ENV_VARS}" in r.content.decode().lower()
    assert not Workload.objects.exists()
    ok = "\n".join(f"V{i}=1" for i in range(inputs.MAX_ENV_VARS))
    assert client.post(reverse("workloads:launch"), dict(RAW_LAUNCH, project=str(project.pk), env=ok)).status_code == 302


@pytest.mark.django_db
def test_author_env_limits_apply_too(client, developer):
    client.force_login(developer)
    env = "\n".join(f"V{i}=1" for i in range(inputs.MAX_ENV_VARS + 1))
    r = client.post(reverse("workloads:recipe_author"), _author_data(env=env))
    assert r.status_code == 200 and f"at most {inputs.MAX_ENV_VARS}" in r.content.decode().lower()


@pytest.mark.django_db
def test_wizard_region_list_is_bounded(client, owner):
    from tests.security.test_fuzz_forms import _wizard_step_url

    client.force_login(owner)
    url = _wizard_step_url(client, "regions")
    r = client.post(url, {"preset": "any", "countries": "", "regions": "r" * 10000})
    assert r.status_code == 200 and "at most" in r.content.decode().lower()
    many = ",".join(f"r{i}" for i in range(inputs.MAX_REGIONS + 1))
    r = client.post(url, {"preset": "any", "countries": "", "regions": many})
    assert r.status_code == 200 and f"at most {inputs.MAX_REGIONS}" in r.content.decode()
    assert client.post(url, {"preset": "any", "countries": "", "regions": "us-east-1, eu-west-1"}).status_code == 302


@pytest.mark.django_db
def test_account_edit_region_list_is_bounded(client, owner, sandbox):
    client.force_login(owner)
    url = reverse("providers:edit", args=[sandbox.pk])
    data = {"name": sandbox.name, "spending_cap_usd": "", "spending_cap_period": "month", "countries": "",
            "default_gpu_class": "", "preference_rank": "0"}
    r = client.post(url, dict(data, regions="r" * 10000))
    assert r.status_code == 200 and "at most" in r.content.decode().lower()
    many = ",".join(f"r{i}" for i in range(inputs.MAX_REGIONS + 1))
    r = client.post(url, dict(data, regions=many))
    assert r.status_code == 200 and f"at most {inputs.MAX_REGIONS}" in r.content.decode().lower()
    assert client.post(url, dict(data, regions="eu-west-1")).status_code == 302
