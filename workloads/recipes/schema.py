"""Recipes: the typed parameter schema, the template that renders to a container spec, and the
built-in catalog.

Pure functions (no database writes). A recipe version holds:

* ``parameters``: ``[{"name", "type", "label", "default", "required", "choices", "min", "max",
  "schemes", "help"}]`` with ``type`` one of :data:`PARAM_TYPES`;
* ``defaults``: ``{"gpu_class", "gpu_count", "min_gpu_count", "max_gpu_count",
  "allowed_gpu_counts", "ports", "volumes", "lifecycle", "max_duration_minutes", "idle"}``;
* ``template``: ``{"command", "args", "env", "ports", "volumes"}`` whose strings may hold
  ``{{ name }}`` placeholders. Built-in names: ``gpu_count``, ``workload_name``. An ``args``
  item may be ``{"when": "<bool param>", "args": [...]}`` to include flags conditionally.

Secrets never enter a rendered spec: a ``secret`` parameter may only be the whole value of an
env variable, and renders to ``{"secret_ref": "secret:<uuid>"}`` (or ``registry:<uuid>``),
resolved by :func:`launch_env` when a pod is launched. ``{{ access_token }}`` renders to
``{"secret_ref": "access_token"}``: the workload's own generated token (Jupyter).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from provisioner.inputs import MAX_ENV_VALUE_CHARS, MAX_ENV_VARS, split_list

PARAM_TYPES = ("string", "int", "float", "bool", "choice", "uri", "secret")
DEFAULT_URI_SCHEMES = ("s3", "gs", "hf", "https")
KNOWN_URI_SCHEMES = ("s3", "gs", "hf", "https", "http", "az", "abfss", "r2", "file")
VOLUME_KINDS = ("ephemeral", "persistent", "network")
PORT_PROTOCOLS = ("http", "tcp")
LIFECYCLES = ("job", "service", "scheduled")
PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
PARAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BUILTIN_VARS = ("gpu_count", "workload_name", "access_token")

# curated base images: short name -> image reference (what the "curated" image kind offers)
CURATED_IMAGES: dict[str, str] = {
    "pytorch": "nvcr.io/nvidia/pytorch:24.08-py3",
    "cuda": "nvcr.io/nvidia/cuda:12.6.2-cudnn-runtime-ubuntu24.04",
    "jupyter-pytorch": "quay.io/jupyter/pytorch-notebook:cuda12-2024-10-07",
    "rocm-pytorch": "rocm/pytorch:rocm6.2_ubuntu22.04_py3.10_pytorch_release_2.3.0",
}


class RecipeError(ValueError):
    """A recipe definition or its rendering is invalid. ``field`` names the culprit."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


# --- image references ---------------------------------------------------------------------------

_IMAGE_REF = re.compile(r"^[a-z0-9]+([._\-/:@][a-zA-Z0-9_.\-]+)*$")


def image_kind_for(image: str) -> str:
    """docker / ngc / curated, from the reference itself."""
    if image in CURATED_IMAGES.values():
        return "curated"
    if image.startswith("nvcr.io/"):
        return "ngc"
    return "docker"


def validate_image(image: str) -> str:
    image = image.strip()
    if image in CURATED_IMAGES:
        image = CURATED_IMAGES[image]
    if not image or " " in image or not _IMAGE_REF.match(image):
        raise RecipeError(f'"{image}" is not a valid image reference (e.g. vllm/vllm-openai:v0.6.3 or nvcr.io/nvidia/pytorch:24.08-py3)', "image")
    return image


# --- URIs ----------------------------------------------------------------------------------------


def validate_uri(value: str, schemes: tuple[str, ...] | list[str] = DEFAULT_URI_SCHEMES) -> str:
    """A URI with one of ``schemes`` and a non-empty location. Raises RecipeError with a clear text."""
    value = (value or "").strip()
    allowed = ", ".join(f"{s}://" for s in schemes)
    if not value or any(c.isspace() for c in value):
        raise RecipeError(f"Enter a URI starting with {allowed}")
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not value.startswith(f"{parsed.scheme}://"):
        raise RecipeError(f'"{value}" is not allowed here: use a URI starting with {allowed}')
    if not parsed.netloc or parsed.netloc.startswith(".") or ".." in parsed.netloc:
        raise RecipeError(f'"{value}" has no bucket, host or repository after {parsed.scheme}://')
    if parsed.scheme in ("s3", "gs") and not re.match(r"^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$", parsed.netloc):
        raise RecipeError(f'"{parsed.netloc}" is not a valid bucket name')
    if parsed.scheme == "hf" and len([p for p in parsed.path.split("/") if p]) < 1:
        raise RecipeError(f'"{value}" must name a repository, e.g. hf://datasets/org/name or hf://org/model')
    return value


# --- parameter schema ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    label: str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    schemes: tuple[str, ...] = DEFAULT_URI_SCHEMES
    help: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Param:
        return cls(
            name=d["name"], type=d["type"], label=d.get("label") or d["name"].replace("_", " ").capitalize(),
            default=d.get("default"), required=bool(d.get("required", False)),
            choices=tuple(str(c) for c in d.get("choices") or ()), min=d.get("min"), max=d.get("max"),
            schemes=tuple(d.get("schemes") or DEFAULT_URI_SCHEMES), help=d.get("help", ""),
        )


def validate_schema(parameters: Any) -> list[dict[str, Any]]:
    """Check an authored parameter schema; returns it normalized. Raises RecipeError."""
    if not isinstance(parameters, list):
        raise RecipeError("The parameter schema must be a list of parameters", "parameters")
    seen: set[str] = set()
    out = []
    for i, d in enumerate(parameters, 1):
        if not isinstance(d, dict) or "name" not in d or "type" not in d:
            raise RecipeError(f'Parameter #{i} needs at least "name" and "type"', "parameters")
        name, typ = str(d["name"]), str(d["type"])
        if not PARAM_NAME.match(name) or name in BUILTIN_VARS:
            raise RecipeError(f'Parameter name "{name}" must be lower-case letters, digits and _ (and not {", ".join(BUILTIN_VARS)})', "parameters")
        if name in seen:
            raise RecipeError(f'Parameter "{name}" is defined twice', "parameters")
        seen.add(name)
        if typ not in PARAM_TYPES:
            raise RecipeError(f'Parameter "{name}": type must be one of {", ".join(PARAM_TYPES)}', "parameters")
        unknown = set(d) - {"name", "type", "label", "default", "required", "choices", "min", "max", "schemes", "help"}
        if unknown:
            raise RecipeError(f'Parameter "{name}": unknown keys {", ".join(sorted(unknown))}', "parameters")
        if typ == "choice" and not d.get("choices"):
            raise RecipeError(f'Parameter "{name}": a choice needs "choices"', "parameters")
        if typ == "uri":
            bad = [s for s in d.get("schemes") or DEFAULT_URI_SCHEMES if s not in KNOWN_URI_SCHEMES]
            if bad:
                raise RecipeError(f'Parameter "{name}": unknown URI schemes {", ".join(bad)}', "parameters")
        if typ == "secret" and d.get("default"):
            raise RecipeError(f'Parameter "{name}": a secret cannot have a default value', "parameters")
        p = Param.from_dict(d)
        if p.default not in (None, ""):
            try:
                coerce_value(p, p.default)
            except RecipeError as exc:
                raise RecipeError(f'Parameter "{name}": default is invalid: {exc}', "parameters")
        out.append(dict(d))
    return out


def coerce_value(p: Param, value: Any) -> Any:
    """Convert and check one parameter value (server-side validation of the schema's rules)."""
    if value in (None, "") and p.type != "bool":
        if p.required:
            raise RecipeError("This parameter is required")
        return "" if p.type in ("string", "uri", "secret", "choice") else None
    if p.type == "string":
        value = str(value)
        if len(value) > 2000:
            raise RecipeError("At most 2000 characters")
        return value
    if p.type == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise RecipeError("Enter a whole number")
        try:
            value = int(str(value).strip())
        except ValueError:
            raise RecipeError("Enter a whole number")
    elif p.type == "float":
        try:
            value = float(str(value).strip())
        except ValueError:
            raise RecipeError("Enter a number")
        if value != value or value in (float("inf"), float("-inf")):
            raise RecipeError("Enter a finite number")
    elif p.type == "bool":
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    elif p.type == "choice":
        value = str(value)
        if value not in p.choices:
            raise RecipeError(f'Choose one of: {", ".join(p.choices)}')
        return value
    elif p.type == "uri":
        return validate_uri(str(value), p.schemes)
    elif p.type == "secret":
        value = str(value)
        if not re.match(r"^(secret|registry):[0-9a-f-]{36}$", value):
            raise RecipeError("Choose a stored secret")
        return value
    if p.min is not None and value < p.min:
        raise RecipeError(f"Must be at least {p.min:g}")
    if p.max is not None and value > p.max:
        raise RecipeError(f"Must be at most {p.max:g}")
    return value


def params_of(version) -> list[Param]:
    return [Param.from_dict(d) for d in (version.parameters or [])]


def default_values(version) -> dict[str, Any]:
    return {p.name: p.default for p in params_of(version) if p.default is not None}


def validate_values(version, values: dict[str, Any]) -> dict[str, Any]:
    """All parameters of ``version`` checked and converted. Raises RecipeError(field=name)."""
    out: dict[str, Any] = {}
    for p in params_of(version):
        value = values.get(p.name)
        if value in (None, "") and p.type != "bool":
            value = p.default  # a blanked field falls back to the recipe's default
        try:
            out[p.name] = coerce_value(p, value)
        except RecipeError as exc:
            raise RecipeError(str(exc), p.name)
    return out


# --- GPU count rules ---------------------------------------------------------------------------


def gpu_count_error(defaults: dict[str, Any], count: int) -> str | None:
    """Why this recipe forbids ``count`` GPUs, or None when it allows it."""
    lo, hi = int(defaults.get("min_gpu_count") or 1), int(defaults.get("max_gpu_count") or 8)
    allowed = defaults.get("allowed_gpu_counts")
    if allowed and count not in allowed:
        return f"This recipe runs on {', '.join(map(str, allowed))} GPUs, not {count}"
    if count < lo or count > hi:
        return f"This recipe needs between {lo} and {hi} GPUs, not {count}"
    return None


# --- rendering -------------------------------------------------------------------------------


def _context(version, values: dict[str, Any], *, gpu_count: int, workload_name: str) -> dict[str, Any]:
    ctx: dict[str, Any] = {"gpu_count": gpu_count, "workload_name": workload_name}
    ctx.update(values)
    return ctx


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return "" if v is None else str(v)


def _render_str(s: str, ctx: dict[str, Any], secret_names: set[str], where: str) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name in secret_names or name == "access_token":
            raise RecipeError(f'The secret "{name}" may only be the whole value of an env variable ({where})', "template")
        if name not in ctx:
            raise RecipeError(f'Unknown placeholder {{{{ {name} }}}} in {where}', "template")
        return _fmt(ctx[name])

    return PLACEHOLDER.sub(sub, s)


def _render_env_value(raw: Any, ctx, secret_names, key: str) -> Any:
    m = PLACEHOLDER.fullmatch(str(raw).strip())
    if m and m.group(1) == "access_token":
        return {"secret_ref": "access_token"}
    if m and m.group(1) in secret_names:
        ref = ctx.get(m.group(1))
        return {"secret_ref": ref} if ref else None  # optional secret left empty: no variable
    return _render_str(str(raw), ctx, secret_names, f"env {key}")


def _as_int(v: Any, what: str) -> int:
    try:
        return int(str(v).strip())
    except ValueError:
        raise RecipeError(f"{what} must be a whole number, got {v!r}", "template")


def render_spec(template: dict[str, Any], values: dict[str, Any], *, secret_names: set[str] = frozenset(),  # type: ignore[assignment]
                gpu_count: int = 1, workload_name: str = "workload", image: str = "") -> dict[str, Any]:
    """Render ``template`` with ``values`` into a concrete container spec (validated)."""
    ctx: dict[str, Any] = {"gpu_count": gpu_count, "workload_name": workload_name, **values}
    command = [_render_str(str(c), ctx, secret_names, "command") for c in template.get("command") or []]
    args: list[str] = []
    for a in template.get("args") or []:
        if isinstance(a, dict):
            if ctx.get(a.get("when", "")):
                args += [_render_str(str(x), ctx, secret_names, "args") for x in a.get("args", [])]
            continue
        args.append(_render_str(str(a), ctx, secret_names, "args"))
    env: dict[str, Any] = {}
    for k, v in (template.get("env") or {}).items():
        rv = _render_env_value(v, ctx, secret_names, k)
        if rv is not None:
            env[k] = rv
    ports = [{"port": _as_int(_render_str(str(p.get("port")), ctx, secret_names, "ports"), "A port"),
              "protocol": p.get("protocol", "http")} for p in template.get("ports") or []]
    volumes = [{"kind": v.get("kind", "ephemeral"),
                "size_gb": _as_int(_render_str(str(v.get("size_gb")), ctx, secret_names, "volumes"), "A volume size"),
                "mount_path": _render_str(str(v.get("mount_path")), ctx, secret_names, "volumes")}
               for v in template.get("volumes") or []]
    spec = {"image": image, "command": command, "args": args, "env": env, "ports": ports, "volumes": volumes}
    validate_container_spec(spec)
    return spec


def render_version(version, values: dict[str, Any], *, gpu_count: int, workload_name: str = "workload") -> dict[str, Any]:
    secret_names = {p.name for p in params_of(version) if p.type == "secret"}
    return render_spec(version.template or {}, values, secret_names=secret_names, gpu_count=gpu_count,
                       workload_name=workload_name, image=version.image)


def validate_container_spec(spec: dict[str, Any]) -> None:
    """A spec every adapter can launch: typed lists, no unresolved placeholders, sane ports/volumes."""
    if spec.get("image") is not None and spec.get("image") != "":
        validate_image(spec["image"])
    for key in ("command", "args"):
        items = spec.get(key)
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise RecipeError(f"{key} must be a list of strings", "template")
        for x in items:
            if "{{" in x or "}}" in x:
                raise RecipeError(f"Unresolved placeholder in {key}: {x}", "template")
    env = spec.get("env")
    if not isinstance(env, dict):
        raise RecipeError("env must be a mapping", "template")
    env_check_limits(env)
    for k, v in env.items():
        if not ENV_NAME.match(k):
            raise RecipeError(f'"{k}" is not a valid environment variable name', "template")
        if isinstance(v, dict):
            if set(v) != {"secret_ref"}:
                raise RecipeError(f"env {k}: only secret references may be objects", "template")
        elif not isinstance(v, str) or "{{" in v:
            raise RecipeError(f"env {k} must be a rendered string", "template")
    ports = spec.get("ports") or []
    seen = set()
    for p in ports:
        if not isinstance(p.get("port"), int) or not 1 <= p["port"] <= 65535:
            raise RecipeError(f"Port {p.get('port')} must be between 1 and 65535", "ports")
        if p.get("protocol") not in PORT_PROTOCOLS:
            raise RecipeError(f"Port {p['port']}: protocol must be http or tcp", "ports")
        if p["port"] in seen:
            raise RecipeError(f"Port {p['port']} is listed twice", "ports")
        seen.add(p["port"])
    for v in spec.get("volumes") or []:
        validate_volume(v)


def validate_volume(v: dict[str, Any]) -> None:
    if v.get("kind") not in VOLUME_KINDS:
        raise RecipeError(f"Volume kind must be one of {', '.join(VOLUME_KINDS)}", "volumes")
    if not isinstance(v.get("size_gb"), int) or not 1 <= v["size_gb"] <= 100_000:
        raise RecipeError("A volume size must be between 1 and 100000 GB", "volumes")
    mp = v.get("mount_path") or ""
    if not mp.startswith("/") or " " in mp or ".." in mp:
        raise RecipeError(f'Mount path "{mp}" must be an absolute path', "volumes")


# --- the text forms users type (ports, volumes, env, command) -----------------------------------


def parse_ports(text: str) -> list[dict[str, Any]]:
    """``"8000/http, 22/tcp"`` -> [{"port": 8000, "protocol": "http"}, ...] (http is the default)."""
    out = []
    for item in split_list(text):
        port, _, proto = item.partition("/")
        if not port.isdigit():
            raise RecipeError(f'"{item}" is not a port (write 8000/http or 22/tcp)', "ports")
        out.append({"port": int(port), "protocol": (proto or "http").lower()})
    validate_container_spec({"command": [], "args": [], "env": {}, "ports": out})
    return out


def format_ports(ports: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['port']}/{p.get('protocol', 'http')}" for p in ports or [])


def parse_volumes(text: str) -> list[dict[str, Any]]:
    """``"persistent:100:/workspace, ephemeral:50:/scratch"`` -> volume dicts."""
    out = []
    for item in re.split(r"[,\n]+", (text or "").strip()):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            raise RecipeError(f'"{item}" must look like persistent:100:/workspace (kind:size_gb:mount_path)', "volumes")
        v = {"kind": parts[0].strip().lower(), "size_gb": int(parts[1]), "mount_path": parts[2].strip()}
        validate_volume(v)
        out.append(v)
    if len({v["mount_path"] for v in out}) != len(out):
        raise RecipeError("Two volumes use the same mount path", "volumes")
    return out


def format_volumes(volumes: list[dict[str, Any]]) -> str:
    return ", ".join(f"{v['kind']}:{v['size_gb']}:{v['mount_path']}" for v in volumes or [])


def parse_env(text: str) -> dict[str, str]:
    """``KEY=value`` lines."""
    env: dict[str, str] = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not ENV_NAME.match(key.strip()):
            raise RecipeError(f'"{line[:80]}" must look like NAME=value', "env")
        env[key.strip()] = value.strip()
    env_check_limits(env)
    return env


def env_check_limits(env: dict[str, Any]) -> None:
    """The documented limits (``provisioner.inputs``): variable count and value size."""
    if len(env) > MAX_ENV_VARS:
        raise RecipeError(f"At most {MAX_ENV_VARS} environment variables ({len(env)} given)", "env")
    for k, v in env.items():
        if isinstance(v, str) and len(v) > MAX_ENV_VALUE_CHARS:
            raise RecipeError(f"{k}: an environment value may be at most {MAX_ENV_VALUE_CHARS} characters", "env")


def parse_command(text: str) -> list[str]:
    # "{{ epochs }}" must stay one word: close up the placeholders' inner spaces first
    text = PLACEHOLDER.sub(lambda m: "{{" + m.group(1) + "}}", text or "")
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise RecipeError(f"Cannot split the command: {exc}", "command")


# --- launch-time resolution (the only place secret values are read) ---------------------------------


def launch_env(workload) -> dict[str, str]:
    """The env a pod is launched with: secret references resolved to their values."""
    from workloads.models import RegistryCredential, TenantSecret

    out: dict[str, str] = {}
    for k, v in ((workload.container_spec or {}).get("env") or {}).items():
        if not isinstance(v, dict):
            out[str(k)] = str(v)
            continue
        ref = str(v.get("secret_ref", ""))
        if ref == "access_token":
            out[k] = workload.access_token
            continue
        kind, _, pk = ref.partition(":")
        model = TenantSecret if kind == "secret" else RegistryCredential
        row = model.objects.filter(tenant_id=workload.tenant_id, pk=pk).first() if pk else None
        if row is not None:
            out[k] = row.value if kind == "secret" else row.secret
    return out


def registry_auth(workload) -> dict[str, str] | None:
    cred = workload.registry_credential
    if cred is None:
        return None
    return {"registry": cred.registry, "username": cred.username, "password": cred.secret}


def spec_preview(spec: dict[str, Any], secret_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The spec as a user sees it before launch: secret references shown by name, never value."""
    labels = secret_labels or {}
    env = {}
    for k, v in (spec.get("env") or {}).items():
        if isinstance(v, dict):
            ref = v.get("secret_ref", "")
            env[k] = "•••• (generated access token)" if ref == "access_token" else f"•••• (secret: {labels.get(ref, 'stored secret')})"
        else:
            env[k] = v
    return {**spec, "env": env}


def spec_as_text(spec: dict[str, Any]) -> str:
    """A readable, YAML-like rendering for the read-only preview."""
    lines = [f"image: {spec.get('image', '')}"]
    if spec.get("command"):
        lines.append("command: " + shlex.join(spec["command"]))
    if spec.get("args"):
        lines.append("args:")
        lines += [f"  - {a}" for a in spec["args"]]
    if spec.get("env"):
        lines.append("env:")
        lines += [f"  {k}: {v}" for k, v in spec["env"].items()]
    if spec.get("ports"):
        lines.append("ports:")
        lines += [f"  - {p['port']}/{p['protocol']}" for p in spec["ports"]]
    if spec.get("volumes"):
        lines.append("volumes:")
        lines += [f"  - {v['kind']} {v['size_gb']} GB at {v['mount_path']}" for v in spec["volumes"]]
    return "\n".join(lines)
