"""Failure causes from real recorded events (tests/unit/data/events/) and a few shaped ones."""

from __future__ import annotations

import json
from pathlib import Path

from labctl.display.failures import Failure, collect, failure_from_event
from labctl.display.progress import Progress

EVENTS = Path(__file__).parent / "data" / "events"
PLAYS = {"Toy host phase": "host", "Toy packages phase": "packages"}


def events(name: str) -> list[dict]:
    return [json.loads(line) for line in (EVENTS / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def failures(name: str) -> dict[str, Failure]:
    evs = events(name)
    p = Progress(play_phases=PLAYS)
    for ev in evs:
        p.feed(ev)
    return {f.host: f for f in collect(evs, PLAYS, p.recap())}


def test_command_failure_shows_stderr_rc_and_command_not_just_non_zero_return_code():
    f = failures("failures")["h3-cp1"]
    assert (f.kind, f.phase, f.task) == ("failed", "host", "Run a command that fails with stderr")
    assert f.rc == 100
    assert f.stderr == ["E: Unable to locate package kubeletx"]
    assert f.cause == "E: Unable to locate package kubeletx"
    text = f.format()
    assert "cause: E: Unable to locate package kubeletx" in text
    assert "rc: 100" in text and "command: echo 'partial output'" in text


def test_unreachable_host_names_the_ssh_error_and_hints_at_labctl_up():
    f = failures("failures")["h3-reg"]
    assert f.kind == "unreachable"
    assert "port 22: Connection timed out" in f.msg
    assert "labctl status" in f.hint and "labctl up" in f.hint
    assert f.format().startswith("h3-reg: UNREACHABLE in host / Reach every host")


def test_service_failure_with_journal_from_the_role():
    f = failures("failures")["h3-w1"]
    assert f.task == "Fail with the journal of toy-broken"
    assert any("cannot bind 0.0.0.0:5000: address already in use" in ln for ln in f.journal)
    assert all(ln.startswith("Nov ") for ln in f.journal)
    assert "journal (last" in f.format()
    assert f.cause == "toy-broken did not start; last journal lines:"


def test_role_message_is_shown_verbatim():
    f = failures("failures2")["h3-cp1"]
    assert f.phase == "packages"
    assert f.msg == "pkgs.k8s.io is not reachable from h3-cp1 (no internet here): set kubernetes.packages_dir in lab.yml"
    assert f.cause == f.msg
    assert f"cause: {f.msg}" in f.format()


def test_failed_loop_item_names_the_item_and_its_command():
    f = failures("failures2")["h3-w1"]
    assert f.item == "/etc/toy-missing"
    assert f.rc == 1 and f.cmd == "test -e /etc/toy-missing"
    assert f.cause == "exit code 1 with no output"


def test_unit_that_did_not_start_without_journal_gets_a_journalctl_hint():
    f = failures("failures2")["h3-reg"]
    assert f.msg.startswith("Unable to start service toy-broken2:")
    assert f.journal == []
    assert f.hint == "the unit's log: `labctl ssh h3-reg -- journalctl -u toy-broken2 -n 50 --no-pager`"


def test_rescued_and_ignored_failures_are_not_reported():
    evs = events("failures")
    # h3-w1's "Start toy-broken" failed and was rescued; only its final failure counts
    assert failures("failures")["h3-w1"].task != "Start toy-broken"
    ignored = {"event": "runner_on_failed", "event_data": {"host": "h3-x", "task": "t", "ignore_errors": True,
                                                           "res": {"msg": "boom"}}}
    assert "h3-x" not in {f.host for f in collect([*evs, ignored], PLAYS)}
    # with a recap where the host did not fail (rescued), nothing is reported for it
    assert collect(evs, PLAYS, {"h3-cp1": {"failed": 0, "unreachable": 0}, "h3-w1": {"failed": 1},
                                "h3-reg": {"unreachable": 1}}) != []
    assert "h3-cp1" not in {f.host for f in collect(evs, PLAYS, {"h3-cp1": {"failed": 0, "unreachable": 0}})}


def test_module_failure_uses_module_stderr():
    ev = {"event": "runner_on_failed", "event_data": {
        "host": "n1", "task": "Install containerd", "play": "p",
        "res": {"msg": "MODULE FAILURE", "module_stderr": "Traceback...\nImportError: No module named apt_pkg\n",
                "module_stdout": "", "rc": 1}}}
    f = failure_from_event(ev, "runtime")
    assert f.stderr[-1] == "ImportError: No module named apt_pkg"
    assert f.cause == "ImportError: No module named apt_pkg"


def test_no_log_failure_says_so():
    ev = {"event": "runner_on_failed", "event_data": {
        "host": "n1", "task": "Log in to the registry",
        "res": {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified"}}}
    f = failure_from_event(ev)
    assert "no_log" in f.msg and "no_log" in f.hint


def test_known_causes_get_hints():
    def hint(msg: str, kind: str = "failed") -> str | None:
        ev = {"event": "runner_on_unreachable" if kind == "unreachable" else "runner_on_failed",
              "event_data": {"host": "n1", "task": "t", "res": {"msg": msg}}}
        return failure_from_event(ev).hint

    assert "known_hosts" in hint("Host key verification failed.", "unreachable")
    assert "ssh_key" in hint("root@10.0.0.1: Permission denied (publickey).", "unreachable")
    assert "apt" in hint("E: Could not get lock /var/lib/dpkg/lock-frontend")
    assert "mirror" in hint("Failed to update apt cache: W:Failed to fetch http://deb.debian.org/")
    assert hint("something we do not know") is None


def test_playbook_that_cannot_run_reports_ansibles_error():
    evs = [{"event": "verbose", "stdout": "[ERROR]: the playbook: playbooks/nfs.yml could not be found"},
           {"event": "playbook_on_stats", "event_data": {}}]
    out = collect(evs, {}, {})
    assert len(out) == 1 and out[0].kind == "error" and "nfs.yml could not be found" in out[0].msg


def test_include_role_failure_shows_the_reason_not_all_items_completed():
    # the event shape ansible-core 2.19 sends when include_role in a loop cannot find the role
    ev = {"event": "runner_on_failed", "event_data": {
        "host": "master", "task": "Render each role's files", "res": {
            "results": [{"_ansible_no_log": False, "render_role": "no_such_role", "_ansible_item_label": "no_such_role"}],
            "msg": "All items completed", "changed": False,
            "reason": "the role 'no_such_role' was not found in /work/main/roles"}}}
    f = failure_from_event(ev)
    assert f.cause == "the role 'no_such_role' was not found in /work/main/roles"
    assert "All items completed" not in f.format()
