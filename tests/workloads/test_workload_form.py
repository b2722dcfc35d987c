"""The declaration form and the developer pages, through the Django test client."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from workloads.models import Pod, PodState, Recipe, TenantSecret, Workload
from workloads.recipes.services import builtin_catalog_install, tenant_secret_create


@pytest.fixture
def catalog(db):
    builtin_catalog_install()


@pytest.fixture
def dev_client(client, developer):
    client.force_login(developer)
    return client


def _llm_post(project, **over):
    data = {"name": "chat", "project": str(project.pk), "p_model": "meta-llama/Llama-3.1-8B-Instruct",
            "p_max_context": "8192", "p_gpu_memory_utilization": "0.9", "p_hf_token": "",
            "gpu_class": "A100", "gpu_count": "2", "lifecycle": "service", "replicas": "1",
            "overlap_policy": "skip", "networking": "public", "ports": "8000/http",
            "volumes": "ephemeral:200:/models", "max_duration_minutes": "120"}
    data.update(over)
    return data


@pytest.mark.django_db
def test_catalog_search_filter_and_deep_link(catalog, dev_client):
    page = dev_client.get(reverse("workloads:recipe_catalog")).content.decode()
    for name in ("Brain pod", "LoRA / QLoRA fine-tuning", "LLM inference", "Stable Diffusion / Flux",
                 "Whisper batch transcription", "Custom container"):
        assert name in page
    found = dev_client.get(reverse("workloads:recipe_catalog"), {"q": "whisper"}, HTTP_HX_REQUEST="true").content.decode()
    assert "Whisper batch transcription" in found and "LLM inference" not in found and "<html" not in found
    training = dev_client.get(reverse("workloads:recipe_catalog"), {"category": "training"}).content.decode()
    assert "LoRA" in training and "Brain pod" not in training
    r = dev_client.get(reverse("workloads:recipe_catalog"), {"recipe": "llm-inference"})
    assert r.status_code == 302 and r.url == reverse("workloads:recipe_launch", kwargs={"slug": "llm-inference"})
    assert dev_client.get(reverse("workloads:recipe_catalog"), {"recipe": "nope"}).status_code == 404


@pytest.mark.django_db
def test_launch_form_renders_typed_parameters(catalog, dev_client, tenant, developer):
    tenant_secret_create(tenant=tenant, user=developer, name="hf-token", value="hf_do_not_show")
    page = dev_client.get(reverse("workloads:recipe_launch", kwargs={"slug": "llm-inference"})).content.decode()
    assert 'name="p_model"' in page and 'value="meta-llama/Llama-3.1-8B-Instruct"' in page
    assert 'type="number" name="p_max_context"' in page
    assert "hf-token (secret)" in page and "hf_do_not_show" not in page
    assert "This recipe runs on 1, 2, 4, 8 GPUs" in page


@pytest.mark.django_db
def test_launching_a_recipe_creates_a_running_service(catalog, dev_client, project, sandbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        r = dev_client.post(reverse("workloads:recipe_launch", kwargs={"slug": "llm-inference"}), _llm_post(project))
    assert r.status_code == 302, r.content.decode()[:2000]
    w = Workload.objects.get(name="chat")
    assert w.recipe_version == Recipe.objects.get(slug="llm-inference").latest_version
    assert w.gpu_count == 2 and w.lifecycle == "service" and not w.idle_enabled
    assert "--tensor-parallel-size" in w.container_spec["args"]
    (pod,) = w.pods.all()
    assert r.url == reverse("workloads:pod_detail", kwargs={"pk": pod.pk})
    pod.refresh_from_db()
    assert pod.state == PodState.RUNNING and pod.gpu_class.startswith("A100") and pod.gpu_count == 2
    page = dev_client.get(r.url).content.decode()
    assert "OpenAI-compatible API" in page and "-8000.sandbox.local" in page


@pytest.mark.parametrize("field,value,message", [
    ("p_max_context", "lots", "Enter a whole number"),
    ("p_max_context", "100", "Ensure this value is greater than or equal to 512"),
    ("gpu_count", "3", "This recipe runs on 1, 2, 4, 8 GPUs, not 3"),
    ("volumes", "disk:10:/x", "Volume kind must be one of"),
    ("ports", "99999/http", "between 1 and 65535"),
    ("schedule_cron", "61 * * * *", "Invalid cron expression"),
])
@pytest.mark.django_db
def test_bad_values_give_inline_errors_and_create_nothing(catalog, dev_client, project, sandbox, field, value, message):
    r = dev_client.post(reverse("workloads:recipe_launch", kwargs={"slug": "llm-inference"}), _llm_post(project, **{field: value}))
    assert r.status_code == 200
    page = r.content.decode()
    assert message in page
    assert 'class="errorlist' in page
    assert not Workload.objects.exists() and not Pod.objects.exists()


@pytest.mark.django_db
def test_malformed_uri_is_refused_inline(catalog, dev_client, project, sandbox):
    data = {"name": "ft", "project": str(project.pk), "p_base_model": "meta-llama/Llama-3.1-8B", "p_dataset_uri": "ftp://files/data",
            "p_epochs": "3", "p_rank": "16", "p_learning_rate": "0.0002", "p_output_uri": "s3://out-bucket/x",
            "gpu_class": "A100", "gpu_count": "1", "lifecycle": "job", "replicas": "1", "overlap_policy": "skip",
            "networking": "public"}
    r = dev_client.post(reverse("workloads:recipe_launch", kwargs={"slug": "lora-finetune"}), data)
    assert r.status_code == 200
    assert "is not allowed here: use a URI starting with s3://, gs://, hf://, https://" in r.content.decode()
    assert not Workload.objects.exists()
    data["p_dataset_uri"] = "s3://datasets-bucket/alpaca.jsonl"
    data["p_epochs"] = "2.5"
    r = dev_client.post(reverse("workloads:recipe_launch", kwargs={"slug": "lora-finetune"}), data)
    assert "Enter a whole number" in r.content.decode() and not Workload.objects.exists()


@pytest.mark.django_db
def test_preview_fragment_shows_spec_and_cost(catalog, dev_client, project, sandbox):
    r = dev_client.get(reverse("workloads:recipe_preview", kwargs={"slug": "llm-inference"}), _llm_post(project, gpu_count="4"),
                       HTTP_HX_REQUEST="true")
    page = r.content.decode()
    assert "--tensor-parallel-size\n  - 4" in page
    assert 'id="estimate-hourly"' in page and "for the maximum duration (120 min)" in page
    bad = dev_client.get(reverse("workloads:recipe_preview", kwargs={"slug": "llm-inference"}), _llm_post(project, gpu_count="3"))
    assert "not 3" in bad.content.decode() and 'id="spec-preview"' not in bad.content.decode()
    assert not Workload.objects.exists()


@pytest.mark.django_db
def test_raw_image_launch_keeps_working(dev_client, project, sandbox, django_capture_on_commit_callbacks):
    page = dev_client.get(reverse("workloads:launch")).content.decode()
    assert 'name="image"' in page and 'value="my-job"' in page
    data = {"name": "raw", "project": str(project.pk), "image": "pytorch", "command": "python -c 'print(1)'",
            "env": "A=1", "gpu_class": "L4", "gpu_count": "1", "lifecycle": "job", "replicas": "1",
            "overlap_policy": "skip", "networking": "internal"}
    with django_capture_on_commit_callbacks(execute=True):
        r = dev_client.post(reverse("workloads:launch"), data)
    assert r.status_code == 302
    w = Workload.objects.get(name="raw")
    assert w.image == "nvcr.io/nvidia/pytorch:24.08-py3"  # curated short name expanded
    assert w.container_spec["command"] == ["python", "-c", "print(1)"] and w.container_spec["env"] == {"A": "1"}
    assert not w.public_ingress and w.recipe_version is None


@pytest.mark.django_db
def test_roles_and_isolation(catalog, client, viewer, outsider, project, tenant, owner):
    client.force_login(viewer)
    assert client.get(reverse("workloads:recipe_launch", kwargs={"slug": "llm-inference"})).status_code == 200
    assert client.post(reverse("workloads:recipe_launch", kwargs={"slug": "llm-inference"}), _llm_post(project)).status_code == 403
    assert client.get(reverse("workloads:recipe_author")).status_code == 403
    assert client.get(reverse("workloads:secrets")).status_code == 403
    from workloads.recipes.services import Declaration, workload_declare

    w = workload_declare(tenant=tenant, owner=owner, declaration=Declaration(name="x", project=project, image="pytorch", gpu_class="A10"))
    assert client.get(reverse("workloads:workload_detail", kwargs={"pk": w.pk})).status_code == 200
    assert client.post(reverse("workloads:workload_stop", kwargs={"pk": w.pk})).status_code == 403
    client.force_login(outsider)
    for name in ("workload_detail", "workload_clone"):
        assert client.get(reverse(f"workloads:{name}", kwargs={"pk": w.pk})).status_code == 404
    assert client.post(reverse("workloads:workload_relaunch", kwargs={"pk": w.pk})).status_code == 404


@pytest.mark.django_db
def test_author_a_custom_recipe_and_edit_it(dev_client, tenant):
    data = {"name": "My trainer", "slug": "my-trainer", "category": "training", "image": "nvcr.io/acme/trainer:1.0",
            "ngc_api_key": "nvapi-SECRET-KEY", "command": "python train.py --epochs {{ epochs }}", "args": "",
            "env": "DATA={{ data }}", "ports": "", "volumes": "ephemeral:50:/scratch",
            "parameters": '[{"name": "epochs", "type": "int", "default": 3, "min": 1, "max": 10},'
                          ' {"name": "data", "type": "uri", "default": "s3://bucket-a/data"}]',
            "gpu_class": "A10", "gpu_count": "1", "min_gpu_count": "1", "max_gpu_count": "2", "lifecycle": "job"}
    r = dev_client.post(reverse("workloads:recipe_author"), data)
    assert r.status_code == 302, r.content.decode()[:3000]
    recipe = Recipe.objects.get(tenant=tenant, slug="my-trainer")
    v1 = recipe.latest_version
    assert v1.version == 1 and v1.image_kind == "ngc"
    cred = tenant.registry_credentials.get()
    assert cred.secret == "nvapi-SECRET-KEY" and v1.defaults["registry_credential_id"] == str(cred.pk)
    page = dev_client.get(reverse("workloads:recipe_launch", kwargs={"slug": "my-trainer"})).content.decode()
    assert 'name="p_epochs"' in page and "nvapi-SECRET-KEY" not in page
    data.update(ngc_api_key="", image="nvcr.io/acme/trainer:1.1", registry_credential=str(cred.pk))
    r = dev_client.post(reverse("workloads:recipe_edit", kwargs={"slug": "my-trainer"}), data)
    assert r.status_code == 302
    assert list(recipe.versions.values_list("version", flat=True)) == [2, 1]
    data["parameters"] = '[{"name": "epochs", "type": "integer"}]'
    r = dev_client.post(reverse("workloads:recipe_edit", kwargs={"slug": "my-trainer"}), data)
    assert r.status_code == 200 and "type must be one of" in r.content.decode()
    assert recipe.versions.count() == 2


@pytest.mark.django_db
def test_secrets_are_write_only(dev_client, tenant):
    r = dev_client.post(reverse("workloads:secrets"), {"name": "hf", "value": "hf_TOPSECRET", "kind": "secret"})
    assert r.status_code == 302
    assert TenantSecret.objects.get(tenant=tenant).value == "hf_TOPSECRET"
    page = dev_client.get(reverse("workloads:secrets")).content.decode()
    assert "hf" in page and "hf_TOPSECRET" not in page


@pytest.mark.django_db
def test_jupyter_token_only_for_those_who_may_launch(catalog, client, developer, viewer, project, tenant, sandbox,
                                                     django_capture_on_commit_callbacks):
    client.force_login(developer)
    data = {"name": "brain", "project": str(project.pk), "p_ssh_public_key": "ssh-ed25519 AAAA dev@host",
            "gpu_class": "A10", "gpu_count": "1", "lifecycle": "service", "replicas": "1", "overlap_policy": "skip",
            "networking": "public", "ports": "8888/http, 22/tcp", "volumes": "persistent:100:/home/jovyan/work"}
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(reverse("workloads:recipe_launch", kwargs={"slug": "brain-pod"}), data)
    assert r.status_code == 302, r.content.decode()[:2000]
    w = Workload.objects.get(name="brain")
    page = client.get(r.url).content.decode()
    assert w.access_token in page and "JupyterLab" in page and "ssh root@" in page
    client.force_login(viewer)
    page = client.get(r.url).content.decode()
    assert w.access_token not in page and "jupyter-token-hidden" in page
    detail = client.get(reverse("workloads:workload_detail", kwargs={"pk": w.pk})).content.decode()
    assert w.access_token not in detail and "generated access token" in detail


@pytest.mark.django_db
def test_clone_stop_and_relaunch(catalog, dev_client, project, sandbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        dev_client.post(reverse("workloads:recipe_launch", kwargs={"slug": "llm-inference"}), _llm_post(project))
    w = Workload.objects.get(name="chat")
    r = dev_client.get(reverse("workloads:workload_clone", kwargs={"pk": w.pk}))
    assert r.status_code == 302 and "clone=" in r.url
    form = dev_client.get(r.url).content.decode()
    assert 'value="chat-copy"' in form and 'value="8000/http"' in form
    with django_capture_on_commit_callbacks(execute=True):
        r = dev_client.post(reverse("workloads:workload_stop", kwargs={"pk": w.pk}))
    w.refresh_from_db()
    assert w.state == Workload.State.STOPPED
    assert not w.pods.filter(state__in=["requested", "provisioning", "running", "stopping"]).exists()
    with django_capture_on_commit_callbacks(execute=True):
        r = dev_client.post(reverse("workloads:workload_relaunch", kwargs={"pk": w.pk}))
    w.refresh_from_db()
    assert w.state == Workload.State.ACTIVE and w.pods.count() == 2
    detail = dev_client.get(reverse("workloads:workload_detail", kwargs={"pk": w.pk})).content.decode()
    assert "Stopped by developer" in detail and "--tensor-parallel-size" in detail


@pytest.mark.django_db
def test_workload_list_query_count_is_constant(catalog, dev_client, tenant, project, developer):
    from workloads.recipes.services import Declaration, workload_declare

    def make(n):
        for i in range(n):
            workload_declare(tenant=tenant, owner=developer, declaration=Declaration(
                name=f"w{Workload.objects.count()}-{i}", project=project, image="pytorch", gpu_class="A10"))

    make(2)
    dev_client.get(reverse("workloads:workload_list"))  # warm the session
    with CaptureQueriesContext(connection) as few:
        assert dev_client.get(reverse("workloads:workload_list")).status_code == 200
    make(10)
    with CaptureQueriesContext(connection) as many:
        dev_client.get(reverse("workloads:workload_list"))
    assert len(many) == len(few), [q["sql"][:150] for q in many.captured_queries]


@pytest.mark.django_db
def test_private_image_preview_names_the_login_and_placement_leaves_out_providers_without_one(dev_client, tenant,
                                                                                                monkeypatch):
    """Issue 13 §2.1: the launch preview says where the registry login goes; the placement
    preview excludes, with the reason, a provider that cannot log in to a private registry."""
    import dataclasses
    from decimal import Decimal

    from providers.adapters.hetzner import HetznerAdapter
    from providers.models import Offer, ProviderAccount
    from provisioner import clock

    data = {"name": "NGC trainer", "slug": "ngc-trainer", "category": "training", "image": "nvcr.io/acme/trainer:1.0",
            "ngc_api_key": "nvapi-SECRET-KEY", "command": "python train.py", "args": "", "env": "", "ports": "",
            "volumes": "", "parameters": "[]", "gpu_class": "A10", "gpu_count": "1", "min_gpu_count": "1",
            "max_gpu_count": "2", "lifecycle": "service"}
    assert dev_client.post(reverse("workloads:recipe_author"), data).status_code == 302
    page = dev_client.get(reverse("workloads:recipe_launch", kwargs={"slug": "ngc-trainer"})).content.decode()
    assert "registry_host=nvcr.io" in page  # the placement preview is asked with the login's host
    frag = dev_client.get(reverse("workloads:recipe_preview", kwargs={"slug": "ngc-trainer"}),
                          {"gpu_class": "A10", "gpu_count": "1"}).content.decode()
    assert 'id="registry-login"' in frag and "<strong>nvcr.io</strong>" in frag and "$oauthtoken" in frag
    assert "nvapi-SECRET-KEY" not in frag

    # every provider logs in today: play one that cannot
    monkeypatch.setattr(HetznerAdapter, "info", dataclasses.replace(HetznerAdapter.info, private_registry=False))
    robot = ProviderAccount.objects.create(tenant=tenant, kind="hetzner", name="Robot FSN", credentials={}, settings={})
    Offer.objects.create(provider_account=robot, tenant=tenant, kind="hetzner", gpu_class="A10", gpu_count=1, region="FSN1",
                         country="DE", price_per_hour=Decimal("0.40"), price_usd_per_hour=Decimal("0.40"), fetched_at=clock.now())
    params = {"gpu_class": "A10", "gpu_count": "1", "lifecycle": "service"}
    private = dev_client.get(reverse("workloads:placement_preview"), {**params, "registry_host": "nvcr.io"}).content.decode()
    assert "Robot FSN: cannot log in to the private registry nvcr.io to pull the image" in private
    public = dev_client.get(reverse("workloads:placement_preview"), params).content.decode()
    assert "cannot log in" not in public and "Robot FSN" in public
