"""`labctl render`: every file labctl would generate for a lab, written to one directory.

Layout of the output directory:
    inventory/hosts.yml, inventory/group_vars/all.yml   (labctl itself)
    <host>/<path on the node>                            (each role's templates, per host)
    cluster/<name>.yaml                                  (manifests and Helm values applied once)

The role templates are rendered by Ansible itself (playbooks/render.yml, a
local connection, no facts), so what is reviewed is exactly what the roles
template on the nodes -- one template, never two.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from labctl.config import Lab
from labctl.errors import RunFailed
from labctl.inventory import render_inventory, write_tree
from labctl.state import REPO_ROOT, StateDir


def render_all(lab: Lab, lab_file: Path, out: Path, *, roles_too: bool = True) -> list[Path]:
    """Render the lab into `out` (replaced); return the files written."""
    state = StateDir(lab_file, lab.name)
    state.ensure()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    inv_dir = out / "inventory"
    write_tree(render_inventory(lab, lab_file), inv_dir)
    if roles_too:
        from labctl.runner import run_playbook

        result = run_playbook(state, "render.yml", inv_dir / "hosts.yml",
                              extravars={"lab_render_dir": str(out.resolve()),
                                         "lab_render_roles": render_roles()})
        if result.rc != 0:
            raise RunFailed(f"rendering failed: {_first_failure(result.events)}")
    return sorted(p for p in out.rglob("*") if p.is_file())


def render_roles() -> list[str]:
    """Every role that can render its files: the ones with tasks/render.yml."""
    return sorted(p.parent.parent.name for p in (REPO_ROOT / "roles").glob("*/tasks/render.yml"))


def _first_failure(events: list[dict]) -> str:
    for ev in events:
        if ev.get("event") in ("runner_on_failed", "runner_on_unreachable"):
            data = ev.get("event_data", {})
            res = data.get("res", {})
            return f"{data.get('host')}: {data.get('task')}: {res.get('msg', res)}"
    for ev in reversed(events):
        if ev.get("event") == "error" or "ERROR!" in ev.get("stdout", ""):
            return ev.get("stdout", "").strip()
    return "ansible-playbook failed (see the event log)"
