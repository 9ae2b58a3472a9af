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

Events reach the caller the way ansible-navigator passes them: ansible-runner
runs in a thread of its own, its event handler only redacts an event and puts
it on a queue, and the thread that called `run_playbook` takes them off the
queue and hands them to `event_handler` (the log, the live display, the
failure report), so nothing the caller owns is touched from the runner's thread.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.machines.reach import control_path_dir
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

    Every event is first passed through `redact` on the runner's thread (in
    place, so the copy that ansible-runner writes to its artifact dir is
    redacted too), then, on the calling thread and in order, kept and handed to
    `event_handler` (see `pump`). ansible-runner's own stdout/stderr capture
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
    inbox: queue.Queue[dict[str, Any]] = queue.Queue()
    cancel = threading.Event()

    def _enqueue(ev: dict[str, Any]) -> bool:
        # the runner's thread: redact in place (ansible-runner writes the event to its artifact dir when
        # this returns True), then hand over; nothing else happens on this thread
        if redact is not None:
            redact(ev)
        inbox.put(ev)
        return True

    def _deliver(ev: dict[str, Any]) -> None:
        # the caller's thread
        if keep_events:
            events.append(ev)
        if event_handler:
            event_handler(ev)

    book = Path(playbook)
    book = book if book.is_absolute() else PLAYBOOKS / playbook
    envvars = {**os.environ, **ansible_env(state, tuned=tuned, forks=forks), **(env or {})}
    kwargs = dict(
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
        event_handler=_enqueue,
        cancel_callback=cancel.is_set,
        quiet=quiet,
        rotate_artifacts=3,
        suppress_env_files=True,
        # not "jsonfile": ansible-runner would repoint the fact cache into its artifact dir
        fact_cache_type="labctl",
    )
    worker = RunnerThread(ansible_runner.run, kwargs)
    with cancel_on_signals(cancel):
        worker.start()
        pump(inbox, worker, _deliver, cancel)
    r = worker.result()
    return RunResult(status=r.status, rc=r.rc, stats=r.stats or {}, events=events,
                     artifact_dir=Path(r.config.artifact_dir) if r.config else None)


class RunnerThread(threading.Thread):
    """`run(**kwargs)` (ansible_runner.run) in a thread; `result()` after it ended returns its value or raises
    what it raised, in the caller's thread."""

    def __init__(self, run: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        super().__init__(name="ansible-runner")
        self._run, self._kwargs = run, kwargs
        self._value: Any = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._value = self._run(**self._kwargs)
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread by result()
            self._error = exc

    def result(self) -> Any:
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


def pump(inbox: queue.Queue, worker: threading.Thread, deliver: Callable[[dict[str, Any]], Any],
         cancel: threading.Event, poll: float = 0.1) -> None:
    """Hand every event of `inbox` to `deliver` on this thread, in order, until `worker` has ended and
    the queue is empty.

    The queue is unbounded, so the runner's thread never waits for this one. When `deliver` raises
    (a display that broke, a second Ctrl-C), the run is canceled through `cancel` (ansible-runner's
    cancel_callback ends ansible-playbook), the runner's thread is waited for, and the exception goes on.
    """
    try:
        while True:
            try:
                ev = inbox.get(timeout=poll)
            except queue.Empty:
                if not worker.is_alive() and inbox.empty():
                    return
                continue
            deliver(ev)
    except BaseException:
        cancel.set()
        worker.join()
        raise


@contextlib.contextmanager
def cancel_on_signals(cancel: threading.Event) -> Iterator[None]:
    """While a run is on: SIGINT/SIGTERM cancel it (what ansible-runner did for a run in the main thread:
    the run ends `canceled` and is reported). A second Ctrl-C raises KeyboardInterrupt. Off the main
    thread, nothing (signals reach only the main thread). The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _on_signal(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
