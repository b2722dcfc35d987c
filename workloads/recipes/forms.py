"""Forms: the workload declaration (recipe parameters rendered from the schema, or a raw image),
custom recipe authoring, and secrets. Dropdowns are restricted to the current organization."""

from __future__ import annotations

import json
import re
from typing import Any

from celery.schedules import crontab
from django import forms

from providers.catalog import GPU_CLASSES, parse_country_pin
from provisioner.inputs import JsonTooDeep, json_loads_bounded, split_list
from tenants.models import Project
from tenants.selectors import projects_for_tenant
from workloads.models import Lifecycle, OverlapPolicy, RecipeVersion, RegistryCredential

from . import schema
from .catalog import CATEGORIES
from .services import Declaration, RecipeContent, declaration_spec, secret_choices

# the brief's families first (A100 = 40 or 80 GB, MI300 = MI300X), then every canonical class
GPU_CHOICES = [("T4", "T4"), ("L4", "L4"), ("A10", "A10"), ("A40", "A40"), ("A100", "A100 (40 or 80 GB)"),
               ("H100", "H100"), ("MI300", "MI300")]
GPU_CHOICES += [(k, v[0]) for k, v in GPU_CLASSES.items() if k not in dict(GPU_CHOICES)]
GPU_CHOICES += [("custom", "Custom: a provider-specific instance type")]
NETWORKING = [("public", "Public ingress (HTTPS URL per http port)"), ("internal", "Internal only (no public URL)")]
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def validate_cron(value: str) -> str:
    parts = value.split()
    if len(parts) != 5:
        raise forms.ValidationError("A cron expression has 5 fields: minute hour day-of-month month day-of-week (e.g. 0 9 * * 1-5)")
    try:
        crontab(minute=parts[0], hour=parts[1], day_of_month=parts[2], month_of_year=parts[3], day_of_week=parts[4])
    except (ValueError, KeyError) as exc:
        raise forms.ValidationError(f"Invalid cron expression: {exc}")
    return " ".join(parts)


def param_field(p: schema.Param, secret_opts: list[tuple[str, str]]) -> forms.Field:
    """One typed Django form field for one recipe parameter."""
    common: dict[str, Any] = {"label": p.label, "required": p.required and p.type != "bool", "help_text": p.help}
    if p.default not in (None, ""):
        common["initial"] = p.default
    if p.type == "int":
        return forms.IntegerField(min_value=p.min, max_value=p.max, **common)
    if p.type == "float":
        return forms.FloatField(min_value=p.min, max_value=p.max, **common)
    if p.type == "bool":
        return forms.BooleanField(**common)
    if p.type == "choice":
        return forms.ChoiceField(choices=[(c, c) for c in p.choices], **common)
    if p.type == "secret":
        empty = [("", "— none —")] if not p.required else [("", "— choose a stored secret —")]
        common["help_text"] = p.help or "Stored secrets of your organization (values are never shown)."
        return forms.ChoiceField(choices=empty + secret_opts, **common)
    if p.type == "uri":
        schemes = ", ".join(f"{s}://" for s in p.schemes)
        common["help_text"] = p.help or f"One of {schemes}"
        return forms.CharField(max_length=1000, **common)
    return forms.CharField(max_length=2000, **common)


class WorkloadForm(forms.Form):
    """The workload declaration. ``version`` None means a raw image launch."""

    name = forms.CharField(max_length=63, help_text="Lower-case letters, digits and dashes")
    project = forms.ModelChoiceField(queryset=Project.objects.none(), empty_label=None)
    image = forms.CharField(max_length=300, required=False, initial="nvcr.io/nvidia/pytorch:24.08-py3",
                            help_text="Docker image, nvcr.io/… NGC entry, or a curated name (pytorch, cuda, jupyter-pytorch)")
    command = forms.CharField(max_length=2000, required=False, help_text="Optional; split like a shell would, run without a shell")
    env = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="NAME=value, one per line")
    gpu_class = forms.ChoiceField(choices=GPU_CHOICES, label="GPU class")
    custom_instance_type = forms.CharField(max_length=128, required=False, label="Provider instance type",
                                           help_text="With GPU class “Custom”, e.g. p5.48xlarge or gpu_1x_a100_sxm4")
    acceptable_gpu_classes = forms.CharField(max_length=200, required=False, label="Also acceptable",
                                             help_text="Other GPU classes that will do, in order (e.g. H100)")
    gpu_count = forms.IntegerField(min_value=1, max_value=16, initial=1, label="GPU count")
    max_duration_minutes = forms.IntegerField(min_value=1, max_value=60 * 24 * 60, required=False, label="Maximum duration (minutes)",
                                              help_text="A hard stop: pods are terminated when they have run this long")
    volumes = forms.CharField(max_length=500, required=False, help_text="kind:size_gb:mount_path, comma-separated; kind is persistent, ephemeral or network")
    ports = forms.CharField(max_length=200, required=False, help_text="e.g. 8000/http, 22/tcp")
    networking = forms.ChoiceField(choices=NETWORKING, initial="public", widget=forms.RadioSelect)
    lifecycle = forms.ChoiceField(choices=Lifecycle.choices)
    replicas = forms.IntegerField(min_value=1, max_value=32, initial=1, help_text="Services and scheduled windows: pods placed independently")
    schedule_cron = forms.CharField(max_length=120, required=False, label="Cron (UTC)", help_text="Scheduled only, e.g. 0 9 * * 1-5")
    overlap_policy = forms.ChoiceField(choices=OverlapPolicy.choices, initial=OverlapPolicy.SKIP, label="If the previous run is still going")
    window_minutes = forms.IntegerField(min_value=1, max_value=60 * 24 * 7, required=False, label="Burst window (minutes)",
                                        help_text="Scheduled services: bring the replicas up at each cron time and tear them all down after this long")
    interruption_tolerant = forms.BooleanField(required=False, label="Can tolerate interruption (allow spot)")
    on_notice_command = forms.CharField(
        max_length=500, required=False, label="On an interruption notice, run (jobs)",
        help_text="A shell command the in-pod agent runs when the provider announces it will take a spot pod "
                  "(e.g. save a checkpoint); NOTICE_SECONDS_LEFT says how long it has")
    countries = forms.CharField(max_length=200, required=False, help_text="ISO codes or presets (EU = the 27 member states, EEA = EU + IS, LI, NO, US), comma-separated")
    regions = forms.CharField(max_length=300, required=False, help_text="Provider regions, comma-separated")
    max_price_per_hour = forms.DecimalField(max_digits=10, decimal_places=2, min_value=0, required=False, label="Price ceiling ($/h)")
    spot_bid_margin_pct = forms.IntegerField(
        min_value=0, max_value=300, required=False, label="Spot bid above the floor (%)",
        help_text="Vast.ai and RunPod rent spot to the highest bid: bid this much over the minimum so a bid a cent "
                  "higher does not take the GPU; never above the price ceiling. Empty: the account's or the platform's")
    idle_enabled = forms.BooleanField(required=False, label="Stop when the GPUs are idle")
    idle_threshold_pct = forms.IntegerField(min_value=1, max_value=100, required=False, label="Idle below (% GPU)")
    idle_window_minutes = forms.IntegerField(min_value=5, max_value=60 * 24 * 7, required=False, label="for (minutes)")

    RAW_ONLY = ("image", "command", "env")

    def __init__(self, *args, tenant=None, version: RecipeVersion | None = None, projects=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tenant = tenant
        self.version = version
        # restricted dropdown: the projects the member may launch in (``projects_for``), else the tenant's
        self.fields["project"].queryset = projects if projects is not None else projects_for_tenant(tenant)
        self.declaration: Declaration | None = None
        self.spec: dict[str, Any] | None = None
        first = self.fields["project"].queryset.first()
        if first is not None:
            self.fields["project"].initial = first.pk
        self.param_names: list[str] = []
        if version is not None:
            for name in self.RAW_ONLY:
                del self.fields[name]
            opts = secret_choices(tenant) if tenant is not None else []
            for p in schema.params_of(version):
                self.fields[f"p_{p.name}"] = param_field(p, opts)
                self.param_names.append(p.name)
            self._recipe_initial(version)
        else:
            self.fields["name"].initial = "my-job"
            self.fields["gpu_class"].initial = "A100-80"
            self.fields["lifecycle"].initial = Lifecycle.JOB
            self.fields["idle_enabled"].initial = True

    def _recipe_initial(self, version: RecipeVersion) -> None:
        d = version.defaults or {}
        f = self.fields
        f["name"].initial = version.recipe.slug
        f["gpu_class"].initial = d.get("gpu_class", "A10")
        f["gpu_count"].initial = d.get("gpu_count", 1)
        lo, hi = d.get("min_gpu_count", 1), d.get("max_gpu_count", 8)
        f["gpu_count"].help_text = (f"This recipe runs on {', '.join(map(str, d['allowed_gpu_counts']))} GPUs"
                                    if d.get("allowed_gpu_counts") else f"Between {lo} and {hi}")
        f["lifecycle"].initial = d.get("lifecycle", Lifecycle.JOB)
        f["max_duration_minutes"].initial = d.get("max_duration_minutes")
        tpl = version.template or {}
        f["volumes"].initial = schema.format_volumes([v for v in tpl.get("volumes") or [] if isinstance(v.get("size_gb"), int)])
        f["ports"].initial = schema.format_ports(tpl.get("ports") or [])
        idle = d.get("idle") or {}
        f["idle_enabled"].initial = bool(idle.get("enabled", d.get("lifecycle") != Lifecycle.SERVICE))
        f["idle_threshold_pct"].initial = idle.get("threshold_pct", 5)
        f["idle_window_minutes"].initial = idle.get("window_minutes", 30)

    # --- validation ---------------------------------------------------------------------------

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip().lower()
        if not NAME_RE.match(name):
            raise forms.ValidationError("Use lower-case letters, digits and dashes (max 63), starting with a letter or digit")
        return name

    def clean_schedule_cron(self) -> str:
        value = self.cleaned_data.get("schedule_cron", "").strip()
        return validate_cron(value) if value else ""

    def clean_acceptable_gpu_classes(self) -> list[str]:
        valid = dict(GPU_CHOICES)
        out = []
        for c in split_list(self.cleaned_data.get("acceptable_gpu_classes", "")):
            c = c.upper() if c.upper() in valid else c
            if c not in valid or c == "custom":
                raise forms.ValidationError(f'"{c}" is not a GPU class ({", ".join(k for k, _ in GPU_CHOICES[:7])}, …)')
            out.append(c)
        return out

    def clean_countries(self) -> list[str]:
        try:
            return parse_country_pin(self.cleaned_data.get("countries", ""))
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_regions(self) -> list[str]:
        return split_list(self.cleaned_data.get("regions", ""))

    def _parse(self, name: str, parser) -> Any:
        try:
            return parser(self.cleaned_data.get(name, ""))
        except schema.RecipeError as exc:
            self.add_error(name, str(exc))
            return None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        lifecycle = data.get("lifecycle")
        if data.get("gpu_class") == "custom" and not data.get("custom_instance_type"):
            self.add_error("custom_instance_type", "Enter the provider's instance type for a custom GPU class")
        if lifecycle == Lifecycle.SCHEDULED and not data.get("schedule_cron"):
            self.add_error("schedule_cron", "A scheduled workload needs a cron expression")
        if lifecycle == Lifecycle.JOB and (data.get("replicas") or 1) > 1:
            self.add_error("replicas", "A one-shot job runs one pod; use a service for replicas")
        if data.get("window_minutes") and lifecycle != Lifecycle.SCHEDULED:
            self.add_error("window_minutes", "A burst window only applies to scheduled workloads")
        volumes = self._parse("volumes", schema.parse_volumes)
        ports = self._parse("ports", schema.parse_ports)
        command = self._parse("command", schema.parse_command) if self.version is None else []
        env = self._parse("env", schema.parse_env) if self.version is None else {}
        if self.version is None and not data.get("image"):
            self.add_error("image", "Enter an image")
        if self.errors:
            return data
        self.declaration = Declaration(
            name=data["name"], project=data["project"], gpu_class=data["gpu_class"], gpu_count=data["gpu_count"],
            recipe_version=self.version,
            parameters={n: data.get(f"p_{n}") for n in self.param_names},
            image=data.get("image", ""), command=command or [], env=env or {},
            custom_instance_type=data.get("custom_instance_type", "") if data["gpu_class"] == "custom" else "",
            acceptable_gpu_classes=data.get("acceptable_gpu_classes") or [],
            max_duration_minutes=data.get("max_duration_minutes"), volumes=volumes, ports=ports,
            public_ingress=data.get("networking") != "internal", lifecycle=lifecycle, replicas=data.get("replicas") or 1,
            schedule_cron=data.get("schedule_cron", ""), overlap_policy=data.get("overlap_policy", OverlapPolicy.SKIP),
            window_minutes=data.get("window_minutes"), interruption_tolerant=data.get("interruption_tolerant", False),
            on_notice_command=data.get("on_notice_command", ""),
            countries=data.get("countries") or [], regions=data.get("regions") or [],
            max_price_per_hour=data.get("max_price_per_hour"), spot_bid_margin_pct=data.get("spot_bid_margin_pct"),
            idle_enabled=data.get("idle_enabled", False),
            idle_threshold_pct=data.get("idle_threshold_pct"), idle_window_minutes=data.get("idle_window_minutes"),
        )
        try:
            self.spec = declaration_spec(self.tenant, self.declaration)
        except schema.RecipeError as exc:
            target = f"p_{exc.field}" if exc.field in self.param_names else exc.field
            self.add_error(target if target in self.fields else None, str(exc))
            self.declaration = None
        return data

    def param_fields(self):
        return [self[f"p_{n}"] for n in self.param_names]


# --- authoring -----------------------------------------------------------------------------------

SCHEMA_EXAMPLE = json.dumps([
    {"name": "dataset_uri", "type": "uri", "label": "Dataset", "required": True, "schemes": ["s3", "gs", "hf"]},
    {"name": "epochs", "type": "int", "default": 3, "min": 1, "max": 50},
], indent=1)


class RecipeAuthorForm(forms.Form):
    """A tenant recipe: image + command + params schema. Each save of a change is a new version."""

    name = forms.CharField(max_length=120)
    slug = forms.SlugField(max_length=64, help_text="Used in links: /recipes/<slug>/")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    category = forms.ChoiceField(choices=list(CATEGORIES.items()), initial="custom")
    image = forms.CharField(max_length=300, help_text="Docker image, nvcr.io/… (NGC) or a curated name: " + ", ".join(schema.CURATED_IMAGES))
    registry_credential = forms.ModelChoiceField(queryset=RegistryCredential.objects.none(), required=False,
                                                 label="Registry login", help_text="For private images, e.g. your NGC API key")
    ngc_api_key = forms.CharField(required=False, label="…or store a new NGC API key", widget=forms.PasswordInput(render_value=False),
                                  help_text="Encrypted at rest, never shown again")
    command = forms.CharField(max_length=2000, required=False, help_text="Placeholders like {{ epochs }} are filled from the parameters")
    args = forms.CharField(max_length=2000, required=False)
    env = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                          help_text="NAME=value per line; a secret parameter may be a whole value: HF_TOKEN={{ hf_token }}")
    ports = forms.CharField(max_length=200, required=False, help_text="e.g. 8000/http, 22/tcp")
    volumes = forms.CharField(max_length=500, required=False, help_text="kind:size_gb:mount_path, comma-separated")
    parameters = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 8, "class": "mono"}),
                                 label="Parameter schema (JSON)", initial="[]",
                                 help_text="Types: " + ", ".join(schema.PARAM_TYPES) + ". Example: " + SCHEMA_EXAMPLE.replace("\n", ""))
    gpu_class = forms.ChoiceField(choices=GPU_CHOICES[:-1], initial="A10", label="Default GPU class")
    gpu_count = forms.IntegerField(min_value=1, max_value=16, initial=1, label="Default GPU count")
    min_gpu_count = forms.IntegerField(min_value=1, max_value=16, initial=1)
    max_gpu_count = forms.IntegerField(min_value=1, max_value=16, initial=8)
    lifecycle = forms.ChoiceField(choices=Lifecycle.choices[:2], initial=Lifecycle.JOB)
    max_duration_minutes = forms.IntegerField(min_value=1, required=False)

    def __init__(self, *args, tenant=None, editing=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.tenant = tenant
        self.fields["registry_credential"].queryset = RegistryCredential.objects.for_tenant(tenant)
        if editing:
            self.fields["slug"].disabled = True
        self.content: RecipeContent | None = None

    def clean_parameters(self) -> list[dict[str, Any]]:
        raw = self.cleaned_data.get("parameters") or "[]"
        try:
            data = json_loads_bounded(raw)  # never a RecursionError, however deep the brackets
        except JsonTooDeep as exc:
            raise forms.ValidationError(f"Not a parameter schema: {exc}")
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno})")
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}")
        try:
            return schema.validate_schema(data)
        except schema.RecipeError as exc:
            raise forms.ValidationError(str(exc))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        try:
            content = RecipeContent(
                image=data["image"], command=schema.parse_command(data.get("command", "")),
                args=schema.parse_command(data.get("args", "")), env=schema.parse_env(data.get("env", "")),
                ports=schema.parse_ports(data.get("ports", "")), volumes=schema.parse_volumes(data.get("volumes", "")),
                parameters=data["parameters"], gpu_class=data["gpu_class"], gpu_count=data["gpu_count"],
                min_gpu_count=data["min_gpu_count"], max_gpu_count=data["max_gpu_count"], lifecycle=data["lifecycle"],
                max_duration_minutes=data.get("max_duration_minutes"),
                registry_credential_id=str(data["registry_credential"].pk) if data.get("registry_credential") else None,
            )
            content.version_fields()  # the defaults must render to a valid spec
        except schema.RecipeError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, str(exc))
            return data
        self.content = content
        return data


class SecretForm(forms.Form):
    name = forms.CharField(max_length=120)
    value = forms.CharField(widget=forms.PasswordInput(render_value=False), help_text="Encrypted at rest; never shown again")
    kind = forms.ChoiceField(choices=[("secret", "Secret (e.g. a Hugging Face token)"), ("registry", "Registry login (NGC API key)")])
    registry = forms.CharField(max_length=200, initial="nvcr.io", required=False)
    username = forms.CharField(max_length=200, initial="$oauthtoken", required=False)
