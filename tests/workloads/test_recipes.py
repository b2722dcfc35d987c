"""Recipes: the built-in catalog renders and launches; schema, URIs, secrets and authoring."""

from __future__ import annotations

import pytest

from tests.factories import make_tenant
from workloads.models import PodState, Recipe, RecipeVersion, Workload
from workloads.recipes import schema
from workloads.recipes.catalog import BUILTIN_RECIPES
from workloads.recipes.services import (
    Declaration,
    RecipeContent,
    builtin_catalog_install,
    recipe_create,
    recipe_version_create,
    tenant_secret_create,
    workload_declare,
    workload_start,
)

SLUGS = [e["slug"] for e in BUILTIN_RECIPES]


@pytest.fixture
def catalog(db):
    builtin_catalog_install()


def _version(slug: str) -> RecipeVersion:
    return Recipe.objects.get(tenant=None, slug=slug).latest_version


def test_catalog_has_the_promised_builtins():
    assert {"brain-pod", "lora-finetune", "llm-inference", "image-generation", "whisper-batch", "custom"} <= set(SLUGS)


@pytest.mark.django_db
def test_catalog_install_is_idempotent_and_versions_changes(monkeypatch):
    builtin_catalog_install()
    builtin_catalog_install()
    assert Recipe.objects.filter(builtin=True).count() == len(BUILTIN_RECIPES)
    assert RecipeVersion.objects.count() == len(BUILTIN_RECIPES)
    # an edited built-in gets a new version; the old one stays for the workloads that used it
    entry = next(e for e in BUILTIN_RECIPES if e["slug"] == "llm-inference")
    monkeypatch.setitem(entry, "image", "vllm/vllm-openai:v0.7.0")
    report = builtin_catalog_install()
    assert "llm-inference: new version 2" in report
    versions = list(Recipe.objects.get(slug="llm-inference").versions.values_list("version", "image"))
    assert versions == [(2, "vllm/vllm-openai:v0.7.0"), (1, "vllm/vllm-openai:v0.6.3")]


@pytest.mark.parametrize("slug", SLUGS)
@pytest.mark.django_db
def test_every_builtin_renders_a_valid_spec_and_launches_on_the_sandbox(slug, catalog, tenant, project, owner, sandbox,
                                                                         django_capture_on_commit_callbacks):
    version = _version(slug)
    defaults = version.defaults
    values = schema.validate_values(version, schema.default_values(version))
    spec = schema.render_version(version, values, gpu_count=defaults["gpu_count"], workload_name=slug)
    schema.validate_container_spec(spec)  # also checked inside render; explicit here
    assert spec["image"] == version.image
    assert spec["command"] and all(isinstance(x, str) for x in spec["command"] + spec["args"])
    assert not any("{{" in x for x in spec["command"] + spec["args"])
    gpu_class = {"A100": "A100-80", "MI300": "MI300X"}.get(defaults["gpu_class"], defaults["gpu_class"])
    decl = Declaration(name=slug, project=project, recipe_version=version, parameters=values,
                       gpu_class=gpu_class, gpu_count=defaults["gpu_count"], lifecycle=defaults["lifecycle"],
                       max_duration_minutes=defaults.get("max_duration_minutes"),
                       volumes=spec["volumes"], ports=spec["ports"])
    w = workload_declare(tenant=tenant, owner=owner, declaration=decl)
    assert w.recipe_version == version
    assert w.container_spec == spec
    with django_capture_on_commit_callbacks(execute=True):
        pods = workload_start(workload=w)
    (pod,) = pods
    pod.refresh_from_db()
    assert pod.state == PodState.RUNNING, pod.state_reason
    inst = sandbox.sandbox_instances.get(tag=str(pod.pk))
    assert inst.spec["image"] == version.image
    assert inst.spec["ports"] == spec["ports"]


@pytest.mark.django_db
def test_llm_inference_ties_tensor_parallelism_to_gpu_count(catalog):
    version = _version("llm-inference")
    values = schema.validate_values(version, {"model": "Qwen/Qwen2.5-72B-Instruct"})
    spec = schema.render_version(version, values, gpu_count=4)
    args = spec["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "4"
    assert args[args.index("--model") + 1] == "Qwen/Qwen2.5-72B-Instruct"
    assert spec["ports"] == [{"port": 8000, "protocol": "http"}]
    assert schema.gpu_count_error(version.defaults, 3) == "This recipe runs on 1, 2, 4, 8 GPUs, not 3"
    assert schema.gpu_count_error(version.defaults, 2) is None


@pytest.mark.django_db
def test_qlora_flag_is_conditional(catalog):
    version = _version("lora-finetune")
    off = schema.render_version(version, schema.validate_values(version, {}), gpu_count=1)
    on = schema.render_version(version, schema.validate_values(version, {"qlora": True}), gpu_count=2)
    assert "--load-in-4bit" not in off["args"] and "--load-in-4bit" in on["args"]
    assert "--nproc_per_node=2" in on["command"]


@pytest.mark.parametrize("value,ok", [
    ("s3://bucket/data.jsonl", True), ("gs://b-1/x", True), ("hf://datasets/org/name", True),
    ("https://example.com/d.jsonl", True), ("ftp://host/x", False), ("s3://", False), ("s3:/bucket/x", False),
    ("bucket/data", False), ("s3://Bad_Bucket!/x", False), ("https://exa mple.com/", False), ("", False),
])
def test_uri_validation(value, ok):
    if ok:
        assert schema.validate_uri(value) == value
    else:
        with pytest.raises(schema.RecipeError):
            schema.validate_uri(value)


def test_typed_values_are_checked():
    p = schema.Param.from_dict({"name": "epochs", "type": "int", "min": 1, "max": 10})
    assert schema.coerce_value(p, "3") == 3
    for bad in ("three", "2.5", 0, 11):
        with pytest.raises(schema.RecipeError):
            schema.coerce_value(p, bad)
    lr = schema.Param.from_dict({"name": "lr", "type": "float", "min": 0.0, "max": 1.0})
    assert schema.coerce_value(lr, "0.001") == 0.001
    with pytest.raises(schema.RecipeError):
        schema.coerce_value(lr, "nan")
    choice = schema.Param.from_dict({"name": "size", "type": "choice", "choices": ["small", "large"]})
    with pytest.raises(schema.RecipeError):
        schema.coerce_value(choice, "medium")


def test_schema_validation_rejects_bad_definitions():
    for bad in ([{"name": "x"}], [{"name": "Bad Name", "type": "string"}], [{"name": "x", "type": "date"}],
                [{"name": "x", "type": "choice"}], [{"name": "x", "type": "int", "default": "a"}],
                [{"name": "x", "type": "string"}, {"name": "x", "type": "int"}],
                [{"name": "gpu_count", "type": "int"}], [{"name": "t", "type": "secret", "default": "abc"}]):
        with pytest.raises(schema.RecipeError):
            schema.validate_schema(bad)


def test_secrets_only_as_whole_env_values():
    tpl = {"command": ["run", "--token={{ tok }}"], "env": {}}
    with pytest.raises(schema.RecipeError, match="whole value of an env variable"):
        schema.render_spec(tpl, {"tok": "secret:00000000-0000-0000-0000-000000000000"}, secret_names={"tok"})


@pytest.mark.django_db
def test_secret_is_never_rendered_but_reaches_the_pod(catalog, tenant, project, owner, sandbox):
    secret = tenant_secret_create(tenant=tenant, user=owner, name="hf", value="hf_SUPERSECRET_123")
    version = _version("llm-inference")
    decl = Declaration(name="llm", project=project, recipe_version=version, gpu_class="A100-80", gpu_count=1,
                       lifecycle="service", parameters={"model": "org/model", "hf_token": f"secret:{secret.pk}"})
    w = workload_declare(tenant=tenant, owner=owner, declaration=decl)
    assert "hf_SUPERSECRET_123" not in str(w.container_spec) and "hf_SUPERSECRET_123" not in str(w.parameters)
    assert w.container_spec["env"]["HF_TOKEN"] == {"secret_ref": f"secret:{secret.pk}"}
    assert schema.launch_env(w)["HF_TOKEN"] == "hf_SUPERSECRET_123"
    preview = schema.spec_as_text(schema.spec_preview(w.container_spec, {f"secret:{secret.pk}": "hf"}))
    assert "hf_SUPERSECRET_123" not in preview and "secret: hf" in preview


@pytest.mark.django_db
def test_another_tenants_secret_cannot_be_referenced(catalog, tenant, project, owner):
    other = make_tenant("Globex", "globex")
    foreign = tenant_secret_create(tenant=other, user=None, name="theirs", value="x")
    version = _version("llm-inference")
    decl = Declaration(name="llm", project=project, recipe_version=version, gpu_class="A100-80", gpu_count=1,
                       parameters={"model": "org/model", "hf_token": f"secret:{foreign.pk}"})
    with pytest.raises(schema.RecipeError):
        workload_declare(tenant=tenant, owner=owner, declaration=decl)
    assert not Workload.objects.exists()


@pytest.mark.django_db
def test_brain_pod_gets_a_generated_jupyter_token(catalog, tenant, project, owner):
    version = _version("brain-pod")
    decl = Declaration(name="brain", project=project, recipe_version=version, gpu_class="A10", lifecycle="service")
    w = workload_declare(tenant=tenant, owner=owner, declaration=decl)
    assert len(w.access_token) >= 24
    assert w.container_spec["env"]["JUPYTER_TOKEN"] == {"secret_ref": "access_token"}
    assert schema.launch_env(w)["JUPYTER_TOKEN"] == w.access_token
    assert not w.idle_enabled  # services: auto-shutdown off unless asked


@pytest.mark.django_db
def test_authoring_creates_a_new_version_per_edit(catalog, tenant, owner):
    content = RecipeContent(image="ghcr.io/acme/trainer:1.0", command=["python", "train.py", "--epochs", "{{ epochs }}"],
                            parameters=[{"name": "epochs", "type": "int", "default": 3, "min": 1, "max": 9}])
    recipe = recipe_create(tenant=tenant, user=owner, slug="trainer", name="Trainer", content=content)
    assert recipe.latest_version.version == 1 and recipe.latest_version.image_kind == "docker"
    same = recipe_version_create(recipe=recipe, content=content)
    assert same.version == 1  # no change, no new version
    content.image = "nvcr.io/acme/trainer:2.0"
    v2 = recipe_version_create(recipe=recipe, content=content)
    assert v2.version == 2 and v2.image_kind == "ngc"
    bad = RecipeContent(image="x:1", command=["run", "{{ missing }}"])
    with pytest.raises(schema.RecipeError, match="Unknown placeholder"):
        recipe_version_create(recipe=recipe, content=bad)
    assert recipe.versions.count() == 2
    with pytest.raises(schema.RecipeError):
        recipe_create(tenant=tenant, user=owner, slug="llm-inference", name="x", content=content)


def test_text_forms_parse_and_reject():
    assert schema.parse_ports("8000/http, 22/tcp") == [{"port": 8000, "protocol": "http"}, {"port": 22, "protocol": "tcp"}]
    assert schema.parse_volumes("persistent:100:/workspace") == [{"kind": "persistent", "size_gb": 100, "mount_path": "/workspace"}]
    for bad in ("70000/http", "80/udp", "x"):
        with pytest.raises(schema.RecipeError):
            schema.parse_ports(bad)
    for bad in ("disk:10:/a", "persistent:0:/a", "persistent:10:relative", "persistent:10:/a, ephemeral:5:/a"):
        with pytest.raises(schema.RecipeError):
            schema.parse_volumes(bad)
    assert schema.parse_env("A=1\n# c\nB = two") == {"A": "1", "B": "two"}


@pytest.mark.django_db
def test_blank_values_fall_back_to_defaults_and_required_ones_are_refused(catalog):
    version = _version("llm-inference")
    values = schema.validate_values(version, {"model": "org/m", "max_context": None, "gpu_memory_utilization": ""})
    assert values["max_context"] == 8192 and values["gpu_memory_utilization"] == 0.9
    lora = _version("lora-finetune")
    lora.parameters = [dict(p, default=None) if p["name"] == "dataset_uri" else p for p in lora.parameters]
    with pytest.raises(schema.RecipeError) as err:
        schema.validate_values(lora, {"dataset_uri": ""})
    assert err.value.field == "dataset_uri" and "required" in str(err.value)
