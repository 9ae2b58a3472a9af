"""The progress model, replayed from real recorded event streams (tests/unit/data/events/)."""

from __future__ import annotations

import json
from pathlib import Path

from labctl.display.progress import Progress

EVENTS = Path(__file__).parent / "data" / "events"
TOY_PLAYS = {"Toy host phase": "host", "Toy runtime phase": "runtime"}
HOSTS = ["h3-cp1", "h3-reg", "h3-w1"]


def events(name: str) -> list[dict]:
    return [json.loads(line) for line in (EVENTS / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def replay(name: str, planned: int | None = None) -> tuple[Progress, list]:
    p = Progress(phases=["host", "runtime"], play_phases=TOY_PLAYS, planned=planned)
    finished = []
    for ev in events(name):
        finished += p.feed(ev)
    return p, finished


def test_first_run_recap_matches_ansibles_own_recap():
    p, _ = replay("toy-first")
    assert p.stats_seen and p.finished
    assert sorted(p.recap()) == HOSTS
    for host in HOSTS:
        r = p.recap()[host]
        # facts, marker (changed), loop, secret copy (changed), uptime = 5 ok; 1 skipped
        assert (r["ok"], r["changed"], r["failed"], r["skipped"], r["unreachable"]) == (5, 2, 0, 1, 0), host
    assert p.changed_total() == 6


def test_second_run_reports_changed_zero_on_every_host():
    p, _ = replay("toy-again")
    assert {h: r["changed"] for h, r in p.recap().items()} == dict.fromkeys(HOSTS, 0)
    assert p.changed_total() == 0


def test_counts_task_hosts_and_finishes_tasks_then_phases_in_order():
    p, finished = replay("toy-first")
    tasks = [f.task.name for f in finished if f.kind == "task"]
    assert tasks == ["Gathering Facts", "Write a marker file", "Skip on every host", "Loop over two items",
                     "Use the registry password on the node", "Report uptime"]
    assert [f.phase for f in finished if f.kind == "phase"] == ["host", "runtime"]
    assert finished[-1].kind == "run"
    assert p.done == 6 * 3  # one result per task and host; loop items are not counted apart
    assert p.phases_done == ["host", "runtime"]


def test_per_task_counts_and_phase_of_each_task():
    p, _ = replay("toy-first")
    by_name = {t.name: t for t in p.tasks}
    assert by_name["Write a marker file"].counts()["changed"] == 3
    assert by_name["Skip on every host"].counts()["skipped"] == 3
    assert by_name["Loop over two items"].counts() == {"ok": 3, "changed": 0, "failed": 0, "skipped": 0,
                                                       "unreachable": 0, "ignored": 0}
    assert by_name["Write a marker file"].phase == "host"
    assert by_name["Report uptime"].phase == "runtime"
    assert all(r.seconds > 0 for r in by_name["Write a marker file"].hosts.values())


def test_no_log_result_still_counts_as_changed():
    """no_log hides `changed` in the event's result; the task changed on the first run and not on the second."""
    first, _ = replay("toy-first")
    again, _ = replay("toy-again")
    name = "Use the registry password on the node"
    assert next(t for t in first.tasks if t.name == name).counts()["changed"] == 3
    assert next(t for t in again.tasks if t.name == name).counts()["changed"] == 0


def test_current_task_per_host_while_running():
    p = Progress(phases=["host", "runtime"], play_phases=TOY_PLAYS)
    seen_running = {}
    for ev in events("toy-first"):
        p.feed(ev)
        if ev["event"] == "runner_on_start":
            seen_running[ev["event_data"]["host"]] = p.hosts[ev["event_data"]["host"]].current
        if ev["event"] == "runner_on_ok":
            assert p.hosts[ev["event_data"]["host"]].current is None
    assert set(seen_running) == set(HOSTS)
    assert seen_running["h3-w1"] == "Report uptime"


def test_phase_position_and_elapsed():
    p = Progress(phases=["host", "runtime"], play_phases=TOY_PLAYS)
    positions = []
    for ev in events("toy-first"):
        p.feed(ev)
        if ev["event"] == "playbook_on_task_start":
            positions.append(p.phase_position())
    assert positions[0] == (1, 2) and positions[-1] == (2, 2)
    assert 1.0 < p.elapsed < 600


def test_planned_comes_from_the_last_run_and_never_drops_below_done():
    p, _ = replay("toy-again", planned=15)
    assert p.planned == 15 and p.done == 15
    p2, _ = replay("toy-first", planned=10)
    assert p2.planned == p2.done == 18
    p3, _ = replay("toy-first")
    assert p3.planned is None


def test_unreachable_and_failed_hosts_in_the_model():
    p = Progress(phases=["host"], play_phases={"Toy host phase": "host"})
    for ev in events("failures"):
        p.feed(ev)
    assert p.hosts["h3-reg"].unreachable
    assert p.hosts["h3-cp1"].failed
    assert p.recap()["h3-w1"]["rescued"] == 1
    assert p.recap()["h3-reg"]["unreachable"] == 1


def test_line_renderer_prints_one_line_per_finished_task_and_phase():
    import io

    from labctl.commands.provision import LineRenderer

    out = io.StringIO()
    render = LineRenderer(out, t0=0.0)
    p = Progress(phases=["host", "runtime"], play_phases=TOY_PLAYS, planned=18)
    for ev in events("toy-first"):
        render(p, ev, p.feed(ev))
    lines = out.getvalue().splitlines()
    assert [ln.split("] ", 1)[1] for ln in lines if "phase" in ln] == ["phase 1/2: host", "phase 2/2: runtime"]
    tasks = [ln for ln in lines if "phase" not in ln]
    assert len(tasks) == 6
    assert tasks[1].split("] ", 1)[1].strip().startswith("6/18 Write a marker file: ok=3 changed=3 (")
    assert "Skip on every host: skipped=3" in tasks[2]


def test_diff_text_renders_a_unified_diff_of_a_changed_result():
    from labctl.commands.provision import diff_text

    ev = {"event": "runner_on_ok", "event_data": {"host": "n1", "task": "Write config", "res": {
        "changed": True, "diff": [{"before_header": "/etc/x", "after_header": "/etc/x",
                                   "before": "a\nb\n", "after": "a\nc\n"}]}}}
    text = diff_text(ev)
    assert text.splitlines()[0] == "--- n1: Write config"
    assert "-b" in text.splitlines() and "+c" in text.splitlines()
    ev["event_data"]["res"]["changed"] = False
    assert diff_text(ev) is None


def test_plays_of_phases_not_selected_do_not_move_the_phase():
    """site.yml starts every play; with --tags the plays of other phases are empty and must not count."""
    p = Progress(phases=["host"], play_phases=TOY_PLAYS)
    finished = []
    for ev in events("toy-first"):
        finished += p.feed(ev)
        if ev["event"] == "playbook_on_play_start":
            assert p.phase == "host" and p.phase_position() == (1, 1)
    assert [f.phase for f in finished if f.kind == "phase"] == ["host"]
