"""`labctl provision` without the terminal: phases -> tags, preflight, secrets, the run, its log, its result.

    provision(lab, lab_file, options, on_event) -> ProvisionResult

Every run writes .labctl/<name>/logs/provision-<UTC stamp>.jsonl (every event,
one JSON object a line, 0600) and provision-<stamp>.tasks.tsv (seconds per task
and host, what bench/ reads). The values of every file under secrets/ are
replaced by "********" in each event before anything (the log, ansible-runner's
artifact dir, the screen) sees it -- the roles' no_log is the first line of
defence, this is the second.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from labctl.display.failures import Failure, collect
from labctl.display.progress import Progress
from labctl.errors import UserError
from labctl.machines import reach
from labctl.model.config import Lab
from labctl.provisioning.phases import PHASES
from labctl.state import StateDir, write_private

# The secrets the roles read from secrets/ (generated before a run when absent).
SECRETS = ("registry-password", "grafana-admin-password")
REDACTED = "********"


@dataclass
class ProvisionOptions:
    phases: list[str] = field(default_factory=lambda: list(PHASES))
    limit: str | None = None
    check: bool = False
    diff: bool = False
    forks: int | None = None
    playbook: str = "site.yml"  # a path under playbooks/ or absolute (labctl's own tests)
    preflight: bool = True


@dataclass
class ProvisionResult:
    ok: bool
    rc: int
    status: str
    phases: list[str]
    recap: dict[str, dict[str, int]]
    changed_total: int
    wall_seconds: float
    task_hosts: int
    log_path: Path
    tasks_path: Path
    forks: int
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rc": self.rc, "status": self.status, "phases": self.phases, "recap": self.recap,
                "changed_total": self.changed_total, "wall_seconds": round(self.wall_seconds, 2),
                "task_hosts": self.task_hosts, "forks": self.forks,
                "seconds_per_task_host": round(self.wall_seconds / self.task_hosts, 3) if self.task_hosts else None,
                "log_path": str(self.log_path), "tasks_path": str(self.tasks_path),
                "failures": [f.to_dict() for f in self.failures], "notes": self.notes}


# -- secrets --------------------------------------------------------------------------------
def ensure_secrets(state: StateDir) -> None:
    """Generate the secrets the roles read (0600), keeping existing ones."""
    for name in SECRETS:
        state.secret(name)


def _base64_needles(value: str) -> set[str]:
    """The parts of base64(<any prefix> + value + <any suffix>) that value alone decides, for each of
    base64's three alignments: the 4-character groups made of value's bytes only (12 characters or more)."""
    raw = value.encode()
    out: set[str] = set()
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw).decode()
        part = enc[4 if k else 0:((k + len(raw)) // 3) * 4]
        if len(part) >= 12:
            out.add(part)
    return out


class Redactor:
    """Replace every secret value found in an event (in place) by "********".

    Whole values, and for PEM keys each body line too (a key can show up cut in
    lines). Lines that also occur in public material (certificates, CSRs, public
    keys: a private key's PEM embeds its public key) are not needles, so a
    certificate is never mistaken for a leak.
    """

    def __init__(self, values: list[str], public: list[str] | None = None) -> None:
        public_text = "\n".join(public or [])
        needles: set[str] = set()
        for v in values:
            v = v.strip()
            if len(v) >= 6:
                needles.add(v)
            needles.update(ln.strip() for ln in v.splitlines()
                           if len(ln.strip()) >= 16 and "-----" not in ln and ln.strip() not in public_text)
            if v and "\n" not in v:  # a password: also inside base64 (a docker config.json's user:password "auth")
                needles.update(_base64_needles(v))
        self.needles = sorted(needles, key=len, reverse=True)

    @classmethod
    def for_state(cls, state: StateDir) -> Redactor:
        """Secrets: the files under secrets/ (CSRs excepted: public by design)."""
        values, public = [], []
        if state.secrets_dir.is_dir():
            for p in sorted(state.secrets_dir.iterdir()):
                if not p.is_file():
                    continue
                try:
                    text = p.read_text()
                except (UnicodeDecodeError, OSError):
                    continue
                (public if p.suffix == ".csr" else values).append(text)
        for pattern in ("*.crt", "*.pem", "*.pub", "ssh/*.pub"):
            for p in state.root.glob(pattern):
                try:
                    public.append(p.read_text())
                except (UnicodeDecodeError, OSError):
                    continue
        return cls(values, public)

    def scrub_file(self, path: Path) -> bool:
        """Redact a file in place (after a run, with every secret the run created); True if it changed."""
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            return False
        new = self.text(text)
        if new == text:
            return False
        mode = path.stat().st_mode & 0o777
        path.write_text(new)
        os.chmod(path, mode)
        return True

    def text(self, s: str) -> str:
        for n in self.needles:
            if n in s:
                s = s.replace(n, REDACTED)
        return s

    def __call__(self, obj: Any) -> Any:
        if not self.needles:
            return obj
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            for k in list(obj):
                v = obj[k]
                new_k = self.text(k) if isinstance(k, str) else k
                new_v = self(v)
                if new_k != k:
                    del obj[k]
                obj[new_k] = new_v
            return obj
        if isinstance(obj, list):
            for i, v in enumerate(obj):
                obj[i] = self(v)
            return obj
        return obj


# -- playbooks and phases ------------------------------------------------------------------
class StateRedactor:
    """A Redactor that learns secrets the run itself creates (the pki role writes secrets/ca.key):
    it reloads when the secrets/ directory changes (one stat per event)."""

    def __init__(self, state: StateDir) -> None:
        self.state = state
        self._mtime = self._stamp()
        self.current = Redactor.for_state(state)

    def _stamp(self) -> float:
        try:
            return self.state.secrets_dir.stat().st_mtime
        except OSError:
            return 0.0

    def __call__(self, obj: Any) -> Any:
        stamp = self._stamp()
        if stamp != self._mtime:
            self._mtime = stamp
            self.current = Redactor.for_state(self.state)
        return self.current(obj)


def _import_of(book: Path, entry: Any) -> Path | None:
    """The playbook an entry of `book` imports (None for a play)."""
    if not isinstance(entry, dict):
        return None
    target = entry.get("ansible.builtin.import_playbook") or entry.get("import_playbook")
    return (book.parent / target).resolve() if target else None


def _imports(playbook: Path) -> list[Path]:
    return [p for e in yaml.safe_load(playbook.read_text()) or [] if (p := _import_of(playbook, e))]


def play_phases(playbook: Path) -> dict[str, str]:
    """Play name -> phase (the first phase name among the play's tags), through import_playbook."""
    out: dict[str, str] = {}
    todo = [playbook]
    seen: set[Path] = set()
    while todo:
        book = todo.pop(0)
        if book in seen or not book.exists():
            continue
        seen.add(book)
        for entry in yaml.safe_load(book.read_text()) or []:
            if not isinstance(entry, dict):
                continue
            target = _import_of(book, entry)
            if target:
                todo.append(target)
                continue
            tags = entry.get("tags") or []
            tags = [tags] if isinstance(tags, str) else tags
            phase = next((t for t in tags if t in PHASES), None)
            if phase and entry.get("name"):
                out[str(entry["name"])] = phase
    return out


def check_imports(playbook: Path) -> None:
    """Every playbook `playbook` imports exists (site.yml imports each phase's statically; one missing
    file would stop Ansible before anything runs): say which, before Ansible starts."""
    missing = [p for p in _imports(playbook) if not p.exists()]
    if missing:
        raise UserError(f"{playbook.name} imports {', '.join(str(p) for p in missing)}, "
                        f"which {'does' if len(missing) == 1 else 'do'} not exist in this checkout")


# -- preflight -----------------------------------------------------------------------------
def limit_nodes(lab: Lab, limit: str | None) -> list[str]:
    """Node names a --limit covers (node names or inventory groups, comma-separated)."""
    if not limit:
        return [n.name for n in lab.nodes]
    groups = {"control_plane": "control-plane", "workers": "worker", "registry": "registry"}
    names: list[str] = []
    for part in [p.strip() for p in limit.split(",") if p.strip()]:
        if part in ("all", "k8s_cluster"):
            names += [n.name for n in lab.nodes if part == "all" or n.role != "registry"]
        elif part in groups:
            names += [n.name for n in lab.nodes if n.role == groups[part]]
        else:
            names.append(lab.node(part).name)  # UserError naming the nodes when unknown
    return list(dict.fromkeys(names))


def _port_open(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def preflight(lab: Lab, state: StateDir, nodes: list[str], timeout: float = 1.5) -> None:
    """Cheap checks before Ansible starts: known_hosts recorded and every selected node's sshd answers."""
    if lab.provider not in ("docker", "vagrant"):
        return
    if not state.known_hosts.is_file() or state.known_hosts.stat().st_size == 0:
        raise UserError(f"no SSH host keys recorded for lab {lab.name!r} ({state.known_hosts}): run `labctl up` first")
    if not state.ssh_key.is_file():
        raise UserError(f"the lab's SSH key {state.ssh_key} is missing: run `labctl up` first")
    targets = reach.node_targets(lab, state)
    with ThreadPoolExecutor(max_workers=min(16, len(nodes) or 1)) as pool:
        up = list(pool.map(lambda n: _port_open(targets[n].host, targets[n].port, timeout), nodes))
    down = [f"{n} ({targets[n].host})" for n, ok in zip(nodes, up, strict=True) if not ok]
    if down:
        raise UserError(f"not answering on ssh (port 22): {', '.join(down)} -- is the lab up? "
                        "run `labctl up` first (`labctl status` shows the machines)")


def close_stale_masters(lab: Lab, state: StateDir, hosts: list[str]) -> None:
    """End the SSH ControlMaster of nodes that were unreachable in the last run.

    A node that died (VM reset, container killed) can leave a master process whose
    TCP connection is half-open: new sessions through it hang until ServerAlive gives
    up. Ending it makes the next connection a fresh one. Cheap: one `ssh -O exit` each.
    """
    import subprocess

    targets = reach.node_targets(lab, state)
    for host in hosts:
        t = targets.get(host)
        if t is None:
            continue
        try:
            subprocess.run(t.control_argv("exit"), capture_output=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue


def _last_run_file(state: StateDir) -> Path:
    return state.logs_dir / "last-run.json"


def last_unreachable(state: StateDir) -> list[str]:
    try:
        return list(json.loads(_last_run_file(state).read_text()).get("unreachable", []))
    except (OSError, ValueError, AttributeError):
        return []


# -- the run ---------------------------------------------------------------------------------
def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _plan_key(opts: ProvisionOptions, playbook: Path) -> str:
    return json.dumps([playbook.name, opts.phases, opts.limit or "", opts.check])


def _plan_file(state: StateDir) -> Path:
    return state.logs_dir / "plan.json"


def load_plan(state: StateDir, key: str) -> int | None:
    try:
        return int(json.loads(_plan_file(state).read_text())[key])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_plan(state: StateDir, key: str, task_hosts: int) -> None:
    try:
        plans = json.loads(_plan_file(state).read_text())
    except (OSError, ValueError):
        plans = {}
    plans[key] = task_hosts
    write_private(_plan_file(state), json.dumps(plans, indent=1) + "\n")


def write_task_times(progress: Progress, path: Path) -> None:
    """One row per task and host (profile_tasks, per host): what bench/ and people sort by."""
    rows = ["phase\tplay\ttask\thost\tstatus\tchanged\tseconds"]
    for t in progress.tasks:
        for r in t.hosts.values():
            cells = [t.phase or "", t.play, t.name, r.host, r.status, "1" if r.changed else "0", f"{r.seconds:.3f}"]
            rows.append("\t".join(c.replace("\t", " ").replace("\n", " ") for c in cells))
    write_private(path, "\n".join(rows) + "\n")


def default_forks(lab: Lab, nodes: list[str]) -> int:
    """min(5, nodes): more than 5 forks did not help on this 2-core controller (CPU-bound)."""
    return max(1, min(5, len(nodes) or len(lab.nodes)))


def provision(lab: Lab, lab_file: Path, opts: ProvisionOptions,
              on_event: Callable[[Progress, dict[str, Any], list], None] | None = None) -> ProvisionResult:
    """Run the selected phases; return the result (never prints)."""
    from labctl.provisioning.inventory import write_inventory
    from labctl.provisioning.runner import PLAYBOOKS, run_playbook

    state = StateDir(lab_file, lab.name)
    unknown = [p for p in opts.phases if p not in PHASES]
    if unknown:
        raise UserError(f"unknown phase(s) {', '.join(unknown)}; allowed: {', '.join(PHASES)}")
    nodes = limit_nodes(lab, opts.limit)
    book = Path(opts.playbook)
    book = book if book.is_absolute() else PLAYBOOKS / opts.playbook
    if not book.is_file():
        raise UserError(f"playbook {book} does not exist")
    state.ensure()
    hosts_file = write_inventory(lab, lab_file)
    if opts.preflight:
        preflight(lab, state, nodes)
    ensure_secrets(state)
    stale = [h for h in last_unreachable(state) if h in nodes]
    if stale:
        close_stale_masters(lab, state, stale)
    check_imports(book)
    phases_map = play_phases(book)
    tags = None if list(opts.phases) == list(PHASES) else ",".join(opts.phases)
    # roles' argument-spec validation is tagged `always`: without skip-tags every role of every
    # phase would validate (and plays would start) even under --tags host
    skip_tags = ",".join(p for p in PHASES if p not in opts.phases) or None
    forks = opts.forks or default_forks(lab, nodes)
    key = _plan_key(opts, book)
    progress = Progress(phases=opts.phases, play_phases=phases_map, planned=load_plan(state, key))
    redact = StateRedactor(state)

    stamp = _stamp()
    log_path = state.logs_dir / f"provision-{stamp}.jsonl"
    n = 1
    while log_path.exists():
        n += 1
        log_path = state.logs_dir / f"provision-{stamp}-{n}.jsonl"
    tasks_path = log_path.with_name(log_path.name.removesuffix(".jsonl") + ".tasks.tsv")
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    log = os.fdopen(fd, "w", encoding="utf-8")
    events: list[dict[str, Any]] = []

    def handler(ev: dict[str, Any]) -> None:
        # ev is already redacted (run_playbook applies `redact` first, in place)
        log.write(json.dumps(ev, default=str) + "\n")
        log.flush()
        if ev.get("event") in ("runner_on_failed", "runner_on_unreachable", "verbose", "error", "playbook_on_stats"):
            events.append(ev)
        finished = progress.feed(ev)
        if on_event is not None:
            on_event(progress, ev, finished)

    t0 = time.monotonic()
    try:
        result = run_playbook(state, str(book), hosts_file, tags=tags, skip_tags=skip_tags, limit=opts.limit,
                              check=opts.check,
                              diff=opts.diff, event_handler=handler, keep_events=False, forks=forks,
                              redact=redact)
    finally:
        log.close()
    wall = time.monotonic() - t0
    # secrets created during the run (ca.key, ...) may postdate some events: scrub once more with all of them
    final = Redactor.for_state(state)
    for path in [log_path, *(result.artifact_dir.rglob("*") if result.artifact_dir else [])]:
        if path.is_file():
            final.scrub_file(path)
    write_task_times(progress, tasks_path)
    recap = progress.recap()
    failures = collect(events, phases_map, recap)
    ok = result.rc == 0 and result.status == "successful" and not failures
    if ok and progress.done:
        save_plan(state, key, progress.done)
    unreachable = sorted(h for h, r in recap.items() if r.get("unreachable"))
    write_private(_last_run_file(state), json.dumps({"log": str(log_path), "ok": ok, "unreachable": unreachable}) + "\n")
    if not ok and not failures:
        failures.append(Failure(host="(controller)", kind="error", task="ansible-playbook",
                                msg=f"ansible-runner ended with status {result.status}, rc {result.rc}; see {log_path}"))
    return ProvisionResult(ok=ok, rc=0 if ok else 1, status=result.status, phases=list(opts.phases), recap=recap,
                           changed_total=progress.changed_total(), wall_seconds=wall, task_hosts=progress.done,
                           log_path=log_path, tasks_path=tasks_path, forks=forks, failures=failures)
