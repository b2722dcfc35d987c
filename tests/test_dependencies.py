"""pyproject.toml is the one dependency list; requirements.lock is generated from it (`make lock`).

These fail when the two disagree (a declared package missing from the lock or locked at another
version, a lock entry pyproject no longer asks for) and when code imports a package nobody
declared (it would arrive only as somebody else's dependency, at whatever version they pull).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections import defaultdict
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
# every Django app and package at the top of the repository (a new app is covered without listing it)
PRODUCT = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests") + ["manage.py"]
# imported only inside the pod by the GPU agent, and only when present (workloads/agent: it falls
# back to nvidia-smi); never installed on the control plane
OPTIONAL_IN_POD = {"pynvml"}


def declared() -> dict[str, dict[str, Requirement]]:
    """Requirements by group: "runtime" ([project].dependencies) and each optional extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"runtime": project["dependencies"], **project.get("optional-dependencies", {})}
    return {group: {canonicalize_name(Requirement(r).name): Requirement(r) for r in reqs} for group, reqs in groups.items()}


def locked(text: str) -> tuple[dict[str, list[Version]], set[str]]:
    """Versions per package in a `uv pip compile` output, and the packages it says pyproject asked for."""
    versions: dict[str, list[Version]] = defaultdict(list)
    from_pyproject: set[str] = set()
    current = None
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.split(";")[0].strip().partition("==")
            current = canonicalize_name(name)
            versions[current].append(Version(version))
        elif current and "(pyproject.toml)" in line:
            from_pyproject.add(current)
    return versions, from_pyproject


def disagreements(groups: dict[str, dict[str, Requirement]], lock_text: str) -> list[str]:
    versions, from_pyproject = locked(lock_text)
    problems = []
    every = {name: req for reqs in groups.values() for name, req in reqs.items()}
    for name, req in sorted(every.items()):
        if name not in versions:
            problems.append(f"{req} is declared in pyproject.toml but missing from requirements.lock")
        elif not all(req.specifier.contains(v, prereleases=True) for v in versions[name]):
            problems.append(f"{req} is declared in pyproject.toml but locked at {', '.join(map(str, versions[name]))}")
    for name in sorted(from_pyproject - every.keys()):
        problems.append(f"{name} is locked as a pyproject.toml dependency but pyproject.toml no longer declares it")
    return problems


def test_the_lock_pins_every_declared_package_at_its_declared_version():
    problems = disagreements(declared(), (ROOT / "requirements.lock").read_text())
    assert not problems, "run `make lock`:\n" + "\n".join(problems)


def test_the_check_catches_a_missing_a_differently_pinned_and_a_stale_package():
    groups = {"runtime": {"django": Requirement("Django==5.2.19"), "httpx": Requirement("httpx==0.28.1")},
              "dev": {"ruff": Requirement("ruff==0.17.6")}}
    lock = ("django==5.2.19\n    # via ai-cloud-provisioner (pyproject.toml)\n"
            "httpx==0.27.0\n    # via ai-cloud-provisioner (pyproject.toml)\n"
            "respx==0.23.1\n    # via ai-cloud-provisioner (pyproject.toml)\n"
            "sqlparse==0.6.1\n    # via django\n")
    assert disagreements(groups, lock) == [
        "httpx==0.28.1 is declared in pyproject.toml but locked at 0.27.0",
        "ruff==0.17.6 is declared in pyproject.toml but missing from requirements.lock",
        "respx is locked as a pyproject.toml dependency but pyproject.toml no longer declares it",
    ]


def imported_distributions(paths: list[Path]) -> dict[str, tuple[set[str], set[str]]]:
    """Top-level module -> (the installed distributions that provide it, the files importing it), for
    every absolute import of a third-party module. A namespace package (``azure``) has several."""
    local = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} | {"bench", "tests", "tools"}
    by_module = packages_distributions()
    found: dict[str, tuple[set[str], set[str]]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in local or top in OPTIONAL_IN_POD:
                    continue
                dists = {canonicalize_name(d) for d in by_module.get(top, [])}
                found.setdefault(top, (dists, set()))[1].add(str(path.relative_to(ROOT)))
    return found


def undeclared_imports(paths: list[Path], allowed: set[str]) -> dict[str, list[str]]:
    return {f"{top} ({', '.join(sorted(dists)) or 'not installed'})": sorted(files)[:3]
            for top, (dists, files) in imported_distributions(paths).items() if not dists & allowed}


def _python_files(*tops: str) -> list[Path]:
    files = []
    for top in tops:
        path = ROOT / top
        files += [path] if path.is_file() else [p for p in path.rglob("*.py") if "migrations" not in p.parts]
    return files


def test_product_code_imports_only_runtime_dependencies():
    undeclared = undeclared_imports(_python_files(*PRODUCT), set(declared()["runtime"]))
    assert not undeclared, f"imported by product code but not in pyproject's [project].dependencies: {undeclared}"


def test_tests_benchmarks_and_tools_import_only_declared_packages():
    every = {name for reqs in declared().values() for name in reqs}
    undeclared = undeclared_imports(_python_files("tests", "bench", "tools"), every)
    assert not undeclared, f"imported by tests, benchmarks or tools but declared nowhere in pyproject.toml: {undeclared}"
