"""The role contract every role in roles/ follows:

- every key in defaults/main.yml starts with the role's name, has a one-line comment right
  above it, and is listed in meta/argument_specs.yml (entry point `main`) with a type -- and
  argument_specs lists nothing that defaults/main.yml does not define;
- every role that has templates renders them: tasks/render.yml exists and every template
  it names exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (REPO / "roles").iterdir() if p.is_dir() and not p.name.startswith("."))
WITH_DEFAULTS = [r for r in ROLES if (r / "defaults" / "main.yml").exists()]
WITH_TEMPLATES = [r for r in ROLES if (r / "templates").is_dir() and any((r / "templates").rglob("*.j2"))]


def ids(roles: list[Path]) -> list[str]:
    return [r.name for r in roles]


def _defaults(role: Path) -> dict:
    return yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}


def _spec_options(role: Path, entry: str = "main") -> dict:
    spec = role / "meta" / "argument_specs.yml"
    if not spec.exists():
        return {}
    doc = yaml.safe_load(spec.read_text()) or {}
    return ((doc.get("argument_specs") or {}).get(entry) or {}).get("options") or {}


@pytest.mark.parametrize("role", WITH_DEFAULTS, ids=ids(WITH_DEFAULTS))
def test_defaults_match_argument_specs(role):
    defaults = set(_defaults(role))
    spec = _spec_options(role)
    assert (role / "meta" / "argument_specs.yml").exists(), f"{role.name}: meta/argument_specs.yml missing"
    assert not defaults - set(spec), f"{role.name}: in defaults/main.yml, not in argument_specs: {sorted(defaults - set(spec))}"
    assert not set(spec) - defaults, f"{role.name}: in argument_specs, not in defaults/main.yml: {sorted(set(spec) - defaults)}"
    untyped = sorted(k for k, v in spec.items() if not (v or {}).get("type"))
    assert not untyped, f"{role.name}: argument_specs options without a type: {untyped}"


@pytest.mark.parametrize("role", WITH_DEFAULTS, ids=ids(WITH_DEFAULTS))
def test_defaults_prefixed_and_commented(role):
    lines = (role / "defaults" / "main.yml").read_text().splitlines()
    problems = []
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*):", line)
        if not m:
            continue
        key = m.group(1)
        if not key.startswith(role.name + "_"):
            problems.append(f"{key}: not prefixed with {role.name}_")
        if i == 0 or not lines[i - 1].startswith("#"):
            problems.append(f"{key}: no one-line comment above it")
    assert not problems, f"{role.name}/defaults/main.yml: " + "; ".join(problems)


@pytest.mark.parametrize("role", WITH_TEMPLATES, ids=ids(WITH_TEMPLATES))
def test_roles_with_templates_render_them(role):
    render = role / "tasks" / "render.yml"
    assert render.exists(), f"{role.name} has templates/ but no tasks/render.yml (labctl render would miss its files)"
    text = render.read_text()
    for vars_file in (role / "vars" / "main.yml", role / "defaults" / "main.yml"):
        if vars_file.exists():
            text += vars_file.read_text()
    # literal names only: a name built from a variable ("{{ addon }}-values.yaml.j2") is not checkable here
    named = {m.group(1) for m in re.finditer(r"(?<![}\w./-])([\w./-]+\.j2)", text)}
    missing = sorted(n for n in named if not (role / "templates" / n).exists())
    assert not missing, f"{role.name}: render.yml (or the template lists it reads) names templates that do not exist: {missing}"
