"""Drive ansible-playbook through ansible-runner. Returns data; never prints.

The settings that make runs fast (pipelining, ControlPersist with a
ControlPath in the state dir, smart fact gathering with a cache) are passed as
ANSIBLE_* environment variables, so the checkout's ansible.cfg stays the
single place for everything else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from labctl.state import REPO_ROOT, StateDir

PLAYBOOKS = REPO_ROOT / "playbooks"


def ansible_env(state: StateDir, tuned: bool = True, forks: int = 5) -> dict[str, str]:
    """ANSIBLE_* settings for a run; `tuned=False` gives Ansible's defaults (for bench/)."""
    env = {
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCAL_TEMP": str(state.root / "tmp"),
    }
    if tuned:
        env.update({
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(state.control_dir),
            "ANSIBLE_GATHERING": "smart",
            "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.jsonfile",
            "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(state.facts_dir),
            "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "7200",
        })
    else:
        env.update({
            "ANSIBLE_PIPELINING": "0",
            "ANSIBLE_GATHERING": "implicit",
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
        })
    return env


@dataclass
class RunResult:
    status: str  # successful | failed | timeout | canceled
    rc: int
    stats: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    artifact_dir: Path | None = None


def run_playbook(
    state: StateDir,
    playbook: str,
    inventory: Path,
    extravars: dict[str, Any] | None = None,
    tags: str | None = None,
    limit: str | None = None,
    check: bool = False,
    diff: bool = False,
    env: dict[str, str] | None = None,
    event_handler: Callable[[dict[str, Any]], bool] | None = None,
    keep_events: bool = True,
    quiet: bool = True,
) -> RunResult:
    """Run playbooks/<playbook> with ansible-runner; every event goes to event_handler."""
    import ansible_runner

    state.ensure()
    (state.root / "tmp").mkdir(mode=0o700, exist_ok=True)
    private = state.root / "runner"
    private.mkdir(mode=0o700, exist_ok=True)
    cmdline = []
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    events: list[dict[str, Any]] = []

    def _handler(ev: dict[str, Any]) -> bool:
        if keep_events:
            events.append(ev)
        if event_handler:
            event_handler(ev)
        return True

    envvars = {**os.environ, **ansible_env(state), **(env or {})}
    r = ansible_runner.run(
        private_data_dir=str(private),
        project_dir=str(PLAYBOOKS),
        playbook=str(PLAYBOOKS / playbook),
        inventory=str(inventory),
        extravars=extravars or {},
        tags=tags,
        limit=limit,
        cmdline=" ".join(cmdline) or None,
        envvars=envvars,
        event_handler=_handler,
        quiet=quiet,
        rotate_artifacts=5,
        suppress_env_files=True,
    )
    return RunResult(status=r.status, rc=r.rc, stats=r.stats or {}, events=events,
                     artifact_dir=Path(r.config.artifact_dir) if r.config else None)
