"""The state of a provision run, built from ansible-runner events. Pure data: no terminal, no clock.

The pattern ansible-navigator uses: ansible-runner's events come through a queue
to the main thread (labctl/provisioning/runner.py), which feeds `Progress.feed(event)`, and a
renderer (labctl/commands/provision.py) draws `Progress` as it is. `feed`
also returns what became *finished* with that event (a task, a phase), so a
line-oriented renderer (CI logs) prints one line per finished task.

Counting is Ansible's: one "task-host" is one runner_on_{ok,failed,skipped,
unreachable} event (loop items are part of their task). "Planned" is honest
about what it is: the number of task-hosts the last complete run of the same
selection produced (dynamic includes, conditions and loops make any count made
before a run a guess); on a first run there is no plan, only phases done of
phases selected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}
TASK_START_EVENTS = ("playbook_on_task_start", "playbook_on_handler_task_start")
RECAP_KEYS = ("ok", "changed", "failed", "skipped", "unreachable", "rescued", "ignored")
# playbook_on_stats keys -> recap keys
_STATS_KEYS = {"ok": "ok", "changed": "changed", "failures": "failed", "skipped": "skipped",
               "dark": "unreachable", "rescued": "rescued", "ignored": "ignored"}


def parse_time(value: str | None) -> float | None:
    """Seconds since the epoch of an event's ISO `created`/`start`/`end` stamp."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


@dataclass
class HostResult:
    """One host's outcome of one task."""

    host: str
    status: str  # ok | failed | skipped | unreachable | ignored (failed with ignore_errors)
    changed: bool
    seconds: float


@dataclass
class TaskRun:
    """A task (or handler) of the run and what each host did with it."""

    uuid: str
    name: str
    play: str
    phase: str | None
    role: str | None
    started: float | None
    hosts: dict[str, HostResult] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        c = {"ok": 0, "changed": 0, "failed": 0, "skipped": 0, "unreachable": 0, "ignored": 0}
        for r in self.hosts.values():
            c[r.status] += 1
            if r.changed:
                c["changed"] += 1
        return c

    @property
    def seconds(self) -> float:
        return max((r.seconds for r in self.hosts.values()), default=0.0)


@dataclass
class Finished:
    """Something that ended with the event just fed: a task, a phase, or the whole run."""

    kind: str  # task | phase | run
    task: TaskRun | None = None
    phase: str | None = None


@dataclass
class HostState:
    name: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECAP_KEYS, 0))
    current: str | None = None       # the task running on this host now
    current_since: float | None = None
    unreachable: bool = False
    failed: bool = False


class Progress:
    """Everything a renderer shows, updated one event at a time."""

    def __init__(self, phases: list[str] | None = None, play_phases: dict[str, str] | None = None,
                 planned: int | None = None) -> None:
        self.phases: list[str] = list(phases or [])
        self.play_phases: dict[str, str] = dict(play_phases or {})
        self.planned_from_last_run: int | None = planned
        self.hosts: dict[str, HostState] = {}
        self.tasks: list[TaskRun] = []
        self.play: str | None = None
        self.play_hosts: list[str] = []
        self.phase: str | None = None
        self.phases_done: list[str] = []
        self.started: float | None = None
        self.last: float | None = None
        self.done = 0
        self.stats_seen = False
        self.finished = False
        self._task: TaskRun | None = None
        self._starts: dict[tuple[str, str], float] = {}

    # -- derived values the renderers show ------------------------------------------------
    @property
    def planned(self) -> int | None:
        """Task-hosts planned (the last full run of this selection), never less than done."""
        if self.planned_from_last_run is None:
            return None
        return max(self.planned_from_last_run, self.done)

    @property
    def elapsed(self) -> float:
        """Seconds between the first and the latest event (a renderer may use its own clock)."""
        if self.started is None or self.last is None:
            return 0.0
        return max(0.0, self.last - self.started)

    @property
    def current_task(self) -> TaskRun | None:
        return self._task

    def phase_position(self) -> tuple[int, int]:
        """(number of the current phase, phases selected), 1-based; (0, n) before the first."""
        if self.phase in self.phases:
            return self.phases.index(self.phase) + 1, len(self.phases)
        return len(self.phases_done), len(self.phases)

    def recap(self) -> dict[str, dict[str, int]]:
        """Per host: ok/changed/failed/skipped/unreachable/rescued/ignored (Ansible's recap)."""
        return {h: dict(s.counts) for h, s in sorted(self.hosts.items())}

    def changed_total(self) -> int:
        return sum(s.counts["changed"] for s in self.hosts.values())

    # -- feeding ------------------------------------------------------------------------------
    def _host(self, name: str) -> HostState:
        if name not in self.hosts:
            self.hosts[name] = HostState(name)
        return self.hosts[name]

    def _finish_task(self) -> list[Finished]:
        out: list[Finished] = []
        if self._task is not None:
            out.append(Finished("task", task=self._task))
            for h in self.hosts.values():
                h.current, h.current_since = None, None
        self._task = None
        return out

    def _enter_phase(self, phase: str | None) -> list[Finished]:
        out: list[Finished] = []
        if phase is not None and self.phases and phase not in self.phases:
            # a play of a phase not selected: site.yml starts it, --tags/--skip-tags leave it empty
            return out
        if phase == self.phase:
            return out
        if self.phase is not None and self.phase not in self.phases_done:
            self.phases_done.append(self.phase)
            out.append(Finished("phase", phase=self.phase))
        self.phase = phase
        return out

    def feed(self, event: dict[str, Any]) -> list[Finished]:
        """Update the state with one ansible-runner event; return what finished with it."""
        kind = event.get("event", "")
        data: dict[str, Any] = event.get("event_data") or {}
        now = parse_time(event.get("created"))
        if now is not None:
            self.started = now if self.started is None else min(self.started, now)
            self.last = now if self.last is None else max(self.last, now)
        out: list[Finished] = []

        if kind == "playbook_on_play_start":
            out += self._finish_task()
            self.play = data.get("play") or data.get("name") or ""
            self.play_hosts = []
            out += self._enter_phase(self.play_phases.get(self.play, self.phase))
        elif kind in TASK_START_EVENTS:
            out += self._finish_task()
            name = data.get("task") or data.get("name") or ""
            if data.get("role") and not name.startswith(f"{data['role']} : "):
                shown = f"{data['role']} : {name}"
            else:
                shown = name
            self._task = TaskRun(uuid=data.get("task_uuid") or data.get("uuid") or "", name=shown,
                                 play=self.play or data.get("play", ""), phase=self.phase,
                                 role=data.get("role"), started=now)
            self.tasks.append(self._task)
        elif kind == "runner_on_start":
            host = data.get("host", "")
            h = self._host(host)
            h.current = self._task.name if self._task else data.get("task")
            h.current_since = parse_time(data.get("start")) or now
            self._starts[(host, data.get("task_uuid", ""))] = h.current_since or 0.0
        elif kind in RESULT_EVENTS:
            self._result(kind, data, now, event.get("stdout", ""))
        elif kind == "playbook_on_stats":
            out += self._finish_task()
            out += self._enter_phase(None)
            self._stats(data)
            self.finished = True
            out.append(Finished("run"))
        return out

    def _result(self, kind: str, data: dict[str, Any], now: float | None, event_stdout: str) -> None:
        host = data.get("host", "")
        h = self._host(host)
        res = data.get("res") or {}
        status = RESULT_EVENTS[kind]
        changed = bool(res.get("changed")) if isinstance(res, dict) else False
        if isinstance(res, dict) and "censored" in res and "changed" not in res:
            # no_log hides the result, "changed" included; the event's display line still says it
            changed = str(event_stdout).lstrip().startswith("changed:")
        if status == "failed" and data.get("ignore_errors"):
            status = "ignored"
        seconds = data.get("duration")
        if seconds is None:
            start = parse_time(data.get("start")) or self._starts.get((host, data.get("task_uuid", "")))
            end = parse_time(data.get("end")) or now
            seconds = (end - start) if (start is not None and end is not None) else 0.0
        self.done += 1
        if status == "ok":
            h.counts["ok"] += 1
        elif status == "ignored":
            h.counts["ignored"] += 1
            h.counts["ok"] += 1
        elif status == "failed":
            h.counts["failed"] += 1
            h.failed = True
        elif status == "skipped":
            h.counts["skipped"] += 1
        elif status == "unreachable":
            h.counts["unreachable"] += 1
            h.unreachable = True
        if changed and status in ("ok", "ignored"):
            h.counts["changed"] += 1
        h.current, h.current_since = None, None
        task = self._task
        if task is None or (data.get("task_uuid") and task.uuid and data.get("task_uuid") != task.uuid):
            task = next((t for t in reversed(self.tasks) if t.uuid == data.get("task_uuid")), task)
        if task is not None:
            task.hosts[host] = HostResult(host, status, changed, float(seconds or 0.0))

    def _stats(self, data: dict[str, Any]) -> None:
        """Ansible's own recap wins over our counts (it knows about rescues and handlers)."""
        self.stats_seen = True
        hosts: set[str] = set()
        for key in _STATS_KEYS:
            hosts.update((data.get(key) or {}).keys())
        for host in hosts:
            h = self._host(host)
            for key, ours in _STATS_KEYS.items():
                h.counts[ours] = int((data.get(key) or {}).get(host, 0))
            h.failed = h.counts["failed"] > 0
            h.unreachable = h.counts["unreachable"] > 0
