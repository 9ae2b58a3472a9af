"""Drive ansible-playbook through ansible-runner. Returns data; never prints.

The settings that make runs fast (pipelining, ControlPersist with a
ControlPath in the state dir, smart fact gathering with a cache) are passed as
ANSIBLE_* environment variables, so the checkout's ansible.cfg stays the
single place for everything else.

Two things ansible-runner does by default that labctl undoes here:
- it points the jsonfile fact cache at its per-run artifact dir (so `smart`
  gathering would gather again on every run): we pass a fact_cache_type it
  does not know, so our ANSIBLE_CACHE_PLUGIN_CONNECTION (the state dir's
  facts/) stays in force;
- it sets ANSIBLE_HOST_KEY_CHECKING=False unless told otherwise, which would
  put `StrictHostKeyChecking=no` in front of the inventory's `=yes`: we set it
  to True, so the lab's known_hosts is what a node is checked against.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.reach import control_path_dir
from labctl.state import REPO_ROOT, StateDir

PLAYBOOKS = REPO_ROOT / "playbooks"

def ansible_env(state: StateDir, tuned: bool = True, forks: int = 5) -> dict[str, str]:
    """ANSIBLE_* settings for a run; `tuned=False` gives Ansible's defaults (for bench/)."""
    env = {
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
        # labctl's own modules (labctl.lab.*) first; a user's own collection paths still count
        "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(
            [str(REPO_ROOT / "collections")]
            + [p for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) if p]),
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCAL_TEMP": str(state.root / "tmp"),
        # ansible-runner would set False; the lab's known_hosts is authoritative.
        "ANSIBLE_HOST_KEY_CHECKING": "True",
    }
    if tuned:
        env.update({
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_path_dir(state)),
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
            "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory",
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
    event_handler: Callable[[dict[str, Any]], Any] | None = None,
    keep_events: bool = True,
    quiet: bool = True,
    forks: int = 5,
    tuned: bool = True,
    redact: Callable[[Any], Any] | None = None,
    skip_tags: str | None = None,
) -> RunResult:
    """Run playbooks/<playbook> (or an absolute path) with ansible-runner.

    Every event is first passed through `redact` (in place, so the copy that
    ansible-runner writes to its artifact dir is redacted too), then kept and
    handed to `event_handler`. ansible-runner's own stdout/stderr capture
    files are not written (the events carry the same text), and no env/ files.
    """
    import ansible_runner

    state.ensure()
    (state.root / "tmp").mkdir(mode=0o700, exist_ok=True)
    private = state.root / "runner"
    private.mkdir(mode=0o700, exist_ok=True)
    # ansible-runner reads its settings from env/settings only (a `settings=` argument is
    # dropped when that file is absent): no stdout/stderr capture files, the events carry the text.
    (private / "env").mkdir(mode=0o700, exist_ok=True)
    settings = private / "env" / "settings"
    if not settings.exists() or "suppress_output_file" not in settings.read_text():
        settings.write_text("---\nsuppress_output_file: true\n")
    cmdline = []
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    events: list[dict[str, Any]] = []

    def _handler(ev: dict[str, Any]) -> bool:
        if redact is not None:
            redact(ev)
        if keep_events:
            events.append(ev)
        if event_handler:
            event_handler(ev)
        return True

    book = Path(playbook)
    book = book if book.is_absolute() else PLAYBOOKS / playbook
    envvars = {**os.environ, **ansible_env(state, tuned=tuned, forks=forks), **(env or {})}
    r = ansible_runner.run(
        private_data_dir=str(private),
        project_dir=str(PLAYBOOKS),
        playbook=str(book),
        inventory=str(inventory),
        extravars=extravars or {},
        tags=tags,
        skip_tags=skip_tags,
        limit=limit,
        forks=forks,
        cmdline=" ".join(cmdline) or None,
        envvars=envvars,
        event_handler=_handler,
        quiet=quiet,
        rotate_artifacts=3,
        suppress_env_files=True,
        # not "jsonfile": ansible-runner would repoint the fact cache into its artifact dir
        fact_cache_type="labctl",
    )
    return RunResult(status=r.status, rc=r.rc, stats=r.stats or {}, events=events,
                     artifact_dir=Path(r.config.artifact_dir) if r.config else None)
