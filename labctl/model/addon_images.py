"""Every upstream image the chosen addons need, at their pinned chart versions.

The per-version image tables live where the roles use them, in each addon role's
vars/main.yml (`<role>_images: {<addon>: {<chart version>: {<component>: {registry,
repository, tag}}}}`, without the <addon> level for single-chart roles), so the values
the roles template and the list `labctl images` mirrors come from one table. `images(lab)` returns upstream references
`<registry>/<repository>:<tag>`; with mirroring on, the roles point every image at
`<lab registry>/<repository>:<tag>` -- labctl.model.images.mirror_name's rule.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from labctl.model import versions
from labctl.model.config import Lab
from labctl.model.facts import enabled_addons
from labctl.state import REPO_ROOT

ROLES = REPO_ROOT / "roles"


@cache
def _role_vars(role: str) -> dict[str, Any]:
    return yaml.safe_load((ROLES / role / "vars" / "main.yml").read_text()) or {}


def image_table(role: str, addon: str) -> dict[str, dict[str, str]]:
    """{component: {registry, repository, tag}} of `addon` at its pinned version, from roles/<role>/vars."""
    table = _role_vars(role)[f"{role}_images"]
    # roles with a choice (ingress, dashboard) key the table by addon first; single-chart
    # roles (metrics_server, monitoring) by version only
    per_version = table[addon] if addon in table else table
    version = versions.ADDONS[addon].version
    if version not in per_version:
        raise KeyError(f"roles/{role}/vars/main.yml has no images for {addon} {version} "
                       f"(it knows {', '.join(per_version)}); add them when bumping the pin")
    return per_version[version]


def reference(image: dict[str, str]) -> str:
    return f"{image['registry']}/{image['repository']}:{image['tag']}"


def chosen(lab: Lab) -> list[tuple[str, str]]:
    """(role, addon) of every chart the lab installs, in the order the addons phase installs them."""
    return list(enabled_addons(lab).items())


def images(lab: Lab) -> list[str]:
    """Upstream references of every image the chosen addons run (no duplicates, stable order)."""
    refs: list[str] = []
    for role, addon in chosen(lab):
        refs += [reference(img) for img in image_table(role, addon).values()]
        if role == "ingress":  # the example Ingress' backend (tests/infra applies it)
            refs += [reference(img) for img in _role_vars("ingress")["ingress_images"]["example"]["whoami"].values()]
    return list(dict.fromkeys(refs))
