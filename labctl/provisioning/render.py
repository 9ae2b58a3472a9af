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

from labctl.errors import RunFailed
from labctl.model.config import Lab
from labctl.provisioning.inventory import render_inventory, write_tree
from labctl.state import REPO_ROOT, StateDir


def render_all(lab: Lab, lab_file: Path, out: Path, *, roles_too: bool = True,
               roles: list[str] | None = None, facts: dict | None = None) -> list[Path]:
    """Render the lab into `out` (replaced); return the files written.

    `roles` limits the roles rendered (default: every role with tasks/render.yml). `facts` stands in
    for what the roles would learn from a node (e.g. kubeadm_init_cpu_emulated), as extra variables.
    """
    state = StateDir(lab_file, lab.name)
    state.ensure()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    inv_dir = out / "inventory"
    write_tree(render_inventory(lab, lab_file), inv_dir)
    if roles_too:
        from labctl.provisioning.runner import run_playbook

        result = run_playbook(state, "render.yml", inv_dir / "hosts.yml",
                              extravars={**(facts or {}), "lab_render_dir": str(out.resolve()),
                                         "lab_render_roles": roles if roles is not None else render_roles()})
        if result.rc != 0:
            raise RunFailed(f"rendering failed:\n{_failure_report(result.events)}")
        write_collected(collected_files(result.events), out)
    return sorted(p for p in out.rglob("*") if p.is_file())


HAND_OVER_TASK = "Hand the rendered files to labctl"


def collected_files(events: list[dict]) -> dict[str, str]:
    """{absolute path: content} that the roles collected, from every host's hand-over event."""
    files: dict[str, str] = {}
    for ev in events:
        data = ev.get("event_data", {})
        if ev.get("event") == "runner_on_ok" and data.get("task") == HAND_OVER_TASK:
            files.update(data.get("res", {}).get("msg") or {})
    return files


def write_collected(files: dict[str, str], out: Path) -> None:
    """Write the collected files; a path outside `out` is a bug in a role, not a file to write."""
    root = out.resolve()
    for name, content in files.items():
        path = Path(name).resolve()
        if root not in path.parents:
            raise RunFailed(f"rendering: a role rendered {name}, outside {root}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def render_roles() -> list[str]:
    """Every role that can render its files: the ones with tasks/render.yml."""
    return sorted(p.parent.parent.name for p in (REPO_ROOT / "roles").glob("*/tasks/render.yml"))


def _failure_report(events: list[dict]) -> str:
    """Where and why the render stopped, as provision reports it (labctl.display.failures)."""
    from labctl.display.failures import collect, playbook_error

    failures = collect(events)
    if failures:
        return "\n".join(f.format() for f in failures)
    return playbook_error(events) or "ansible-playbook failed (see the event log)"
