"""Runner events through a queue (#16): ansible-runner's event handler, on the runner's thread, only
redacts and enqueues; the thread that called run_playbook delivers the events, in order, to the log and
the display; a display that breaks cancels the run instead of leaving the runner's thread behind."""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from labctl.provisioning.runner import RunnerThread, cancel_on_signals, pump, run_playbook
from labctl.state import StateDir


class FakeDisplay:
    """Records the events it is shown; fails the test if it is drawn from another thread."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.owner = threading.current_thread()
        self.seen: list[int] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def __call__(self, ev: dict[str, Any]) -> None:
        self.threads.add(threading.current_thread().name)
        assert threading.current_thread() is self.owner, "the display was touched from the runner's thread"
        self.seen.append(ev["counter"])
        if self.fail_on is not None and len(self.seen) >= self.fail_on:
            raise RuntimeError("the display broke")


def fake_runner(n: int, until_canceled: bool = False, log: dict[str, Any] | None = None):
    """Stands in for ansible_runner.run: emits events from the thread it is called on, the way
    ansible-runner calls its event handler from the thread that runs ansible-playbook."""
    log = {} if log is None else log

    def run(**kw: Any) -> SimpleNamespace:
        log["thread"] = threading.current_thread()
        handler, cancel = kw["event_handler"], kw["cancel_callback"]
        status = "successful"
        deadline = time.monotonic() + 10
        i = 0
        while (i < n or until_canceled) and time.monotonic() < deadline:
            if cancel():
                status = "canceled"
                break
            ev = {"event": "runner_on_ok", "counter": i, "stdout": f"event {i} pw=s3cr3t-value"}
            assert handler(ev) is True  # True: ansible-runner writes the event to its artifact dir
            log.setdefault("written", []).append(ev["stdout"])  # what the artifact dir would hold
            i += 1
            if until_canceled:
                time.sleep(0.001)
        log["emitted"] = i
        return SimpleNamespace(status=status, rc=0 if status == "successful" else 254, stats={"ok": {}},
                               config=SimpleNamespace(artifact_dir=str(kw["private_data_dir"])))
    return run


def _state(tmp_path: Path) -> StateDir:
    return StateDir(tmp_path / "lab.yml", "q-lab")


def _redact(ev: dict[str, Any]) -> None:
    ev["stdout"] = ev["stdout"].replace("s3cr3t-value", "********")


def test_events_from_the_runner_thread_arrive_in_order_on_the_calling_thread(tmp_path, monkeypatch):
    import ansible_runner

    log: dict[str, Any] = {}
    monkeypatch.setattr(ansible_runner, "run", fake_runner(2000, log=log))
    display = FakeDisplay()
    result = run_playbook(_state(tmp_path), "site.yml", tmp_path / "hosts.yml", event_handler=display,
                          redact=_redact)
    assert log["thread"] is not threading.current_thread()  # ansible-runner did run in a thread of its own
    assert display.seen == list(range(2000))
    assert display.threads == {threading.current_thread().name}
    assert [ev["counter"] for ev in result.events] == list(range(2000))
    assert result.status == "successful" and result.rc == 0
    # redacted on the runner's thread before ansible-runner writes the event: the artifact copy is clean
    assert all("s3cr3t" not in text for text in log["written"])
    assert all("s3cr3t" not in ev["stdout"] for ev in result.events)


def test_a_display_that_raises_cancels_the_run_and_does_not_deadlock(tmp_path, monkeypatch):
    import ansible_runner

    log: dict[str, Any] = {}
    monkeypatch.setattr(ansible_runner, "run", fake_runner(0, until_canceled=True, log=log))
    display = FakeDisplay(fail_on=3)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="the display broke"):
        run_playbook(_state(tmp_path), "site.yml", tmp_path / "hosts.yml", event_handler=display)
    assert time.monotonic() - t0 < 8  # canceled, not run out to the fake's 10 s deadline
    assert not log["thread"].is_alive()
    assert log["emitted"] >= 3
    assert display.seen[:3] == [0, 1, 2]


def test_an_error_in_the_runner_thread_reaches_the_caller(tmp_path, monkeypatch):
    import ansible_runner

    def broken(**kw: Any) -> None:
        raise ValueError("bad runner config")

    monkeypatch.setattr(ansible_runner, "run", broken)
    with pytest.raises(ValueError, match="bad runner config"):
        run_playbook(_state(tmp_path), "site.yml", tmp_path / "hosts.yml", event_handler=FakeDisplay())


def test_pump_drains_what_is_queued_after_the_runner_ended():
    inbox: queue.Queue = queue.Queue()
    worker = RunnerThread(lambda: [inbox.put({"counter": i}) for i in range(50)], {})
    worker.start()
    worker.join()
    seen: list[int] = []
    pump(inbox, worker, lambda ev: seen.append(ev["counter"]), threading.Event(), poll=0.01)
    assert seen == list(range(50))


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals: main thread only")
def test_ctrl_c_cancels_the_run_and_a_second_one_interrupts():
    cancel = threading.Event()
    before = signal.getsignal(signal.SIGINT)
    with cancel_on_signals(cancel):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert cancel.is_set()  # the run is canceled (it ends `canceled` and is reported), no exception
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    assert signal.getsignal(signal.SIGINT) is before
