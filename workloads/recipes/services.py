"""Writes for recipes and recipe launches: catalog install, authoring (a new version per edit),
secrets, and declaring a workload from a recipe version + parameters (or a raw image)."""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction

from tenants.models import Project, Tenant
from workloads.lifecycle.services import workload_create, workload_launch
from workloads.models import Lifecycle, OverlapPolicy, Pod, Recipe, RecipePin, RecipeVersion, RegistryCredential, TenantSecret, Workload

from . import schema
from .catalog import BUILTIN_RECIPES, CARD_FIELDS, VERSION_FIELDS

# --- catalog -----------------------------------------------------------------------------------


@transaction.atomic
def builtin_catalog_install() -> list[str]:
    """Create or update the built-in recipes. Idempotent: a new version only when content changed.

    Returns one line per recipe saying what happened.
    """
    report = []
    for entry in BUILTIN_RECIPES:
        card = {k: entry[k] for k in CARD_FIELDS if k != "slug"}
        recipe, created = Recipe.objects.get_or_create(tenant=None, slug=entry["slug"], defaults={**card, "builtin": True})
        if not created:
            Recipe.objects.filter(pk=recipe.pk).update(**card, builtin=True)
        content = {k: entry[k] for k in VERSION_FIELDS}
        version, made = _version_if_changed(recipe, content)
        report.append(f"{entry['slug']}: {'new version ' + str(version.version) if made else 'up to date (v' + str(version.version) + ')'}")
    return report


def _version_if_changed(recipe: Recipe, content: dict[str, Any]) -> tuple[RecipeVersion, bool]:
    latest = recipe.versions.order_by("-version").select_for_update().first()
    if latest is not None and all(getattr(latest, k) == v for k, v in content.items()):
        return latest, False
    version = RecipeVersion.objects.create(recipe=recipe, version=(latest.version + 1) if latest else 1, **content)
    return version, True


# --- authoring -----------------------------------------------------------------------------------


@dataclass
class RecipeContent:
    """What an author edits; every edit that changes it becomes a new RecipeVersion."""

    image: str
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ports: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    parameters: list[dict[str, Any]] = field(default_factory=list)
    gpu_class: str = "A10"
    gpu_count: int = 1
    min_gpu_count: int = 1
    max_gpu_count: int = 8
    lifecycle: str = Lifecycle.JOB
    max_duration_minutes: int | None = None
    registry_credential_id: str | None = None

    def version_fields(self) -> dict[str, Any]:
        image = schema.validate_image(self.image)
        params = schema.validate_schema(self.parameters)
        template = {"command": self.command, "args": self.args, "env": self.env,
                    "ports": self.ports, "volumes": self.volumes}
        defaults = {"gpu_class": self.gpu_class, "gpu_count": self.gpu_count, "min_gpu_count": self.min_gpu_count,
                    "max_gpu_count": self.max_gpu_count, "lifecycle": self.lifecycle,
                    "max_duration_minutes": self.max_duration_minutes,
                    "idle": {"enabled": self.lifecycle != Lifecycle.SERVICE, "threshold_pct": 5, "window_minutes": 30}}
        if self.registry_credential_id:
            defaults["registry_credential_id"] = str(self.registry_credential_id)
        if schema.gpu_count_error(defaults, self.gpu_count):
            raise schema.RecipeError("The default GPU count must lie between the minimum and the maximum", "gpu_count")
        fields = {"image": image, "image_kind": schema.image_kind_for(image), "parameters": params,
                  "defaults": defaults, "template": template}
        # the defaults must render: an author finds template mistakes now, not at launch
        probe = RecipeVersion(**fields)
        schema.render_version(probe, schema.validate_values(probe, schema.default_values(probe) | _secret_probe(probe)),
                               gpu_count=self.gpu_count)
        return fields


def _secret_probe(version: RecipeVersion) -> dict[str, Any]:
    return {p.name: "secret:00000000-0000-0000-0000-000000000000" for p in schema.params_of(version) if p.type == "secret"}


@transaction.atomic
def recipe_create(*, tenant: Tenant, user, slug: str, name: str, description: str = "", category: str = "custom",
                  content: RecipeContent) -> Recipe:
    """A tenant-authored recipe with its first version."""
    if Recipe.objects.filter(tenant__isnull=True, slug=slug).exists():
        raise schema.RecipeError(f'"{slug}" is the name of a built-in recipe; choose another', "slug")
    if Recipe.objects.filter(tenant=tenant, slug=slug).exists():
        raise schema.RecipeError(f'Your organization already has a recipe "{slug}"', "slug")
    _check_credential(tenant, content.registry_credential_id)
    fields = content.version_fields()
    recipe = Recipe.objects.create(tenant=tenant, slug=slug, name=name, description=description, category=category,
                                   builtin=False, created_by=user)
    RecipeVersion.objects.create(recipe=recipe, version=1, **fields)
    return recipe


@transaction.atomic
def recipe_version_create(*, recipe: Recipe, name: str | None = None, description: str | None = None,
                          content: RecipeContent) -> RecipeVersion:
    """Save an edit: card fields update in place, content becomes a new version when it changed."""
    if recipe.builtin or recipe.tenant_id is None:
        raise schema.RecipeError("Built-in recipes are edited by the catalog installer, not by users")
    _check_credential(recipe.tenant, content.registry_credential_id)
    fields = content.version_fields()
    updates = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
    if updates:
        Recipe.objects.filter(pk=recipe.pk).update(**updates)
    version, _ = _version_if_changed(recipe, fields)
    return version


def _check_credential(tenant: Tenant, credential_id: str | None) -> None:
    if credential_id and not RegistryCredential.objects.filter(tenant=tenant, pk=credential_id).exists():
        raise schema.RecipeError("Unknown registry credential", "registry_credential")


@transaction.atomic
def recipe_author_save(*, tenant: Tenant, user, recipe: Recipe | None, slug: str, name: str, description: str,
                       category: str, content: RecipeContent, ngc_api_key: str = "") -> tuple[Recipe, int]:
    """The authoring page's one write: the NGC key's registry login (if one was given) and the
    recipe or its new version, in one transaction, so a refused recipe leaves no credential
    behind. Returns the recipe and the version number saved."""
    if ngc_api_key:
        label = f"NGC key for {name}"
        cred_name = label if len(label) <= RECIPE_CREDENTIAL_NAME_MAX else label[:RECIPE_CREDENTIAL_NAME_MAX - 1] + "…"
        content.registry_credential_id = str(registry_credential_create(tenant=tenant, name=cred_name,
                                                                        secret=ngc_api_key).pk)
    if recipe is None:
        recipe = recipe_create(tenant=tenant, user=user, slug=slug, name=name, description=description,
                               category=category, content=content)
        return recipe, 1
    version = recipe_version_create(recipe=recipe, name=name, description=description, content=content)
    return recipe, version.version


RECIPE_CREDENTIAL_NAME_MAX = RegistryCredential._meta.get_field("name").max_length


def recipe_pin_toggle(*, tenant: Tenant, user, recipe: Recipe) -> bool:
    """Pin the recipe for this member, or unpin it if pinned; returns whether it is pinned now."""
    deleted, _ = RecipePin.objects.filter(tenant=tenant, user=user, recipe=recipe).delete()
    if deleted:
        return False
    RecipePin.objects.get_or_create(tenant=tenant, user=user, recipe=recipe)  # a double click stays one pin
    return True


@transaction.atomic
def registry_credential_create(*, tenant: Tenant, name: str, secret: str, registry: str = "nvcr.io",
                               username: str = "$oauthtoken") -> RegistryCredential:
    """Store a registry login (an NGC API key by default), encrypted at rest."""
    return RegistryCredential.objects.create(tenant=tenant, name=name, registry=registry, username=username, secret=secret)


@transaction.atomic
def tenant_secret_create(*, tenant: Tenant, user, name: str, value: str) -> TenantSecret:
    """Store (or replace) a named secret, encrypted at rest."""
    secret, _ = TenantSecret.objects.update_or_create(tenant=tenant, name=name, defaults={"value": value, "created_by": user})
    return secret


def secret_choices(tenant: Tenant) -> list[tuple[str, str]]:
    """Choices for a secret parameter: names only, never values."""
    out = [(f"secret:{pk}", f"{name} (secret)") for pk, name in TenantSecret.objects.for_tenant(tenant).values_list("pk", "name")]
    out += [(f"registry:{pk}", f"{name} (registry login)")
            for pk, name in RegistryCredential.objects.for_tenant(tenant).values_list("pk", "name")]
    return out


def secret_labels(tenant: Tenant) -> dict[str, str]:
    return dict(secret_choices(tenant))


# --- declaring a workload ------------------------------------------------------------------------


@dataclass
class Declaration:
    """Everything a developer declares on the launch form (recipe or raw image)."""

    name: str
    project: Project
    gpu_class: str
    gpu_count: int = 1
    recipe_version: RecipeVersion | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    image: str = ""
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    custom_instance_type: str = ""
    acceptable_gpu_classes: list[str] = field(default_factory=list)
    max_duration_minutes: int | None = None
    volumes: list[dict[str, Any]] | None = None  # None: the recipe's
    ports: list[dict[str, Any]] | None = None  # None: the recipe's
    public_ingress: bool = True
    lifecycle: str = Lifecycle.JOB
    replicas: int = 1
    schedule_cron: str = ""
    overlap_policy: str = OverlapPolicy.SKIP
    window_minutes: int | None = None
    interruption_tolerant: bool = False
    on_notice_command: str = ""  # jobs: run by the agent on an interruption notice
    countries: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    max_price_per_hour: Decimal | None = None
    spot_bid_margin_pct: int | None = None  # None: settings.SPOT_BID_MARGIN_PCT (workloads.placement.bids)
    idle_enabled: bool | None = None  # None: the recipe's / lifecycle default
    idle_threshold_pct: int | None = None
    idle_window_minutes: int | None = None


def declaration_spec(tenant: Tenant, d: Declaration) -> dict[str, Any]:
    """The concrete container spec a declaration renders to (raises RecipeError)."""
    if d.recipe_version is not None:
        values = schema.validate_values(d.recipe_version, d.parameters)
        err = schema.gpu_count_error(d.recipe_version.defaults or {}, d.gpu_count)
        if err:
            raise schema.RecipeError(err, "gpu_count")
        spec = schema.render_version(d.recipe_version, values, gpu_count=d.gpu_count, workload_name=d.name)
        _check_secret_refs(tenant, spec)
    else:
        spec = {"image": schema.validate_image(d.image), "command": list(d.command), "args": [], "env": dict(d.env),
                "ports": [], "volumes": []}
    if d.ports is not None:
        spec["ports"] = d.ports
    if d.volumes is not None:
        spec["volumes"] = d.volumes
    schema.validate_container_spec(spec)
    return spec


def _check_secret_refs(tenant: Tenant, spec: dict[str, Any]) -> None:
    known = set(secret_labels(tenant)) | {"access_token"}
    for k, v in spec.get("env", {}).items():
        if isinstance(v, dict) and v.get("secret_ref") not in known:
            raise schema.RecipeError(f"{k}: choose one of your organization's stored secrets", "secret")


@transaction.atomic
def workload_declare(*, tenant: Tenant, owner, declaration: Declaration) -> Workload:
    """Validate and store a declaration as a Workload (no pods yet). Raises RecipeError."""
    d = declaration
    spec = declaration_spec(tenant, d)
    version = d.recipe_version
    rdefaults = (version.defaults if version else {}) or {}
    idle = rdefaults.get("idle") or {}
    fields: dict[str, Any] = {
        "recipe_version": version, "parameters": schema.validate_values(version, d.parameters) if version else {},
        "container_spec": spec, "custom_instance_type": d.custom_instance_type,
        "acceptable_gpu_classes": d.acceptable_gpu_classes, "max_duration_minutes": d.max_duration_minutes,
        "volumes": spec["volumes"], "ports": spec["ports"], "public_ingress": d.public_ingress,
        "replicas": max(1, d.replicas), "schedule_cron": d.schedule_cron if d.lifecycle == Lifecycle.SCHEDULED else "",
        "overlap_policy": d.overlap_policy, "window_minutes": d.window_minutes if d.lifecycle == Lifecycle.SCHEDULED else None,
        "countries": d.countries, "regions": d.regions, "max_price_per_hour": d.max_price_per_hour,
        "spot_bid_margin_pct": d.spot_bid_margin_pct, "on_notice_command": d.on_notice_command.strip(),
    }
    if d.idle_enabled is not None:
        fields["idle_enabled"] = d.idle_enabled
    elif idle and d.lifecycle != Lifecycle.SERVICE:
        fields["idle_enabled"] = bool(idle.get("enabled", True))
    fields["idle_threshold_pct"] = d.idle_threshold_pct or idle.get("threshold_pct") or 5
    fields["idle_window_minutes"] = d.idle_window_minutes or idle.get("window_minutes") or 30
    cred_id = rdefaults.get("registry_credential_id")
    if cred_id:
        fields["registry_credential"] = RegistryCredential.objects.filter(tenant=tenant, pk=cred_id).first()
    if any(isinstance(v, dict) and v.get("secret_ref") == "access_token" for v in spec["env"].values()):
        fields["access_token"] = secrets.token_urlsafe(24)
    return workload_create(tenant=tenant, project=d.project, owner=owner, name=d.name, image=spec["image"],
                                    gpu_class=d.gpu_class, gpu_count=d.gpu_count,
                                    interruption_tolerant=d.interruption_tolerant, lifecycle=d.lifecycle, **fields)


@transaction.atomic
def workload_declare_and_start(*, tenant: Tenant, owner, declaration: Declaration) -> tuple[Workload, list[Pod]]:
    """The launch form's one write: declare and start in one transaction, so a failure (e.g. the
    audit write) leaves no workload, no pod and no queued provisioning task behind."""
    workload = workload_declare(tenant=tenant, owner=owner, declaration=declaration)
    return workload, workload_start(workload=workload)


def workload_start(*, workload: Workload) -> list[Pod]:
    """Launch a declared workload now (job/service), or install its cron entry (scheduled)."""
    if workload.lifecycle == Lifecycle.SCHEDULED:
        from workloads.lifecycle.scheduling import workload_schedule_sync

        workload_schedule_sync(workload=workload)
        return []
    return workload_launch(workload=workload)


def declaration_from_workload(workload: Workload) -> dict[str, Any]:
    """Initial form values that reproduce ``workload`` (clone)."""
    initial: dict[str, Any] = {
        "name": f"{workload.name}-copy", "project": workload.project_id, "gpu_class": workload.gpu_class,
        "gpu_count": workload.gpu_count, "custom_instance_type": workload.custom_instance_type,
        "acceptable_gpu_classes": ", ".join(workload.acceptable_gpu_classes or []),
        "max_duration_minutes": workload.max_duration_minutes, "volumes": schema.format_volumes(workload.volumes),
        "ports": schema.format_ports(workload.ports), "public_ingress": workload.public_ingress,
        "lifecycle": workload.lifecycle, "replicas": workload.replicas, "schedule_cron": workload.schedule_cron,
        "overlap_policy": workload.overlap_policy, "window_minutes": workload.window_minutes,
        "interruption_tolerant": workload.interruption_tolerant, "countries": ", ".join(workload.countries or []),
        "regions": ", ".join(workload.regions or []), "max_price_per_hour": workload.max_price_per_hour,
        "spot_bid_margin_pct": workload.spot_bid_margin_pct, "on_notice_command": workload.on_notice_command,
        "idle_enabled": workload.idle_enabled, "idle_threshold_pct": workload.idle_threshold_pct,
        "idle_window_minutes": workload.idle_window_minutes, "image": workload.image,
        "command": shlex.join((workload.container_spec or {}).get("command", [])),
    }
    for k, v in (workload.parameters or {}).items():
        initial[f"p_{k}"] = v
    return initial
