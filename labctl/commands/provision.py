"""labctl provision: run the phases (playbooks/site.yml) with live progress, a full event log and precise failures."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from labctl.commands._common import add_command, load


def add_parser(sub) -> None:
    p = add_command(sub, "provision", "provision the lab's machines phase by phase (hosts, runtime, registry, "
                    "kubernetes, addons) with live progress", "labctl provision --until registry", run)
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--phase", metavar="A,B", help="only these phases (comma-separated)")
    sel.add_argument("--until", metavar="PHASE", help="every phase up to and including PHASE")
    p.add_argument("--limit", metavar="NODE", help="only these nodes (names or groups, comma-separated)")
    p.add_argument("--check", action="store_true", help="dry run: report what would change, change nothing")
    p.add_argument("--diff", action="store_true", help="show the changes to files (with --check: what would change)")
    p.add_argument("--forks", type=int, metavar="N", help="hosts worked on in parallel (default: min(5, nodes))")
    p.add_argument("--no-progress", action="store_true", help="no live display: one line per finished task")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout (progress goes to stderr)")
    # labctl's own tests run small playbooks through the same pipeline
    p.add_argument("--playbook", default="site.yml", help=argparse.SUPPRESS)


# -- renderers ----------------------------------------------------------------------------------
def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m:02d}:{s:02d}"


def _done_of(progress) -> str:
    planned = progress.planned
    return f"{progress.done}/{planned}" if planned else f"{progress.done}"


class LineRenderer:
    """One line per finished task and phase (CI logs, pipes, --no-progress)."""

    def __init__(self, stream, t0: float) -> None:
        self.stream = stream
        self.t0 = t0
        self.phase: str | None = None

    def __call__(self, progress, event: dict[str, Any], finished: list) -> None:
        for f in finished:
            if f.kind != "task" or f.task is None or not f.task.hosts:
                continue  # a handler nobody notified, a play with no hosts left
            c = f.task.counts()
            shown = " ".join(f"{k}={v}" for k, v in c.items() if v)
            print(f"[{_clock(time.monotonic() - self.t0)}] {_done_of(progress):>9} {f.task.name}: "
                  f"{shown or 'no hosts'} ({f.task.seconds:.1f}s)", file=self.stream, flush=True)
        if progress.phase and progress.phase != self.phase:
            self.phase = progress.phase
            pos, total = progress.phase_position()
            print(f"[{_clock(time.monotonic() - self.t0)}] phase {pos}/{total}: {self.phase}", file=self.stream, flush=True)


class LiveView:
    """rich Live: phase, tasks done of planned, elapsed, and the current task of every host."""

    def __init__(self, progress, lab_name: str, t0: float) -> None:
        self.progress = progress
        self.lab_name = lab_name
        self.t0 = t0

    def __rich__(self):
        from rich.table import Table

        # the refresh thread reads while events arrive: copy before iterating
        p = self.progress
        pos, total = p.phase_position()
        title = (f"labctl provision {self.lab_name} -- phase {pos}/{total} {p.phase or ''} -- "
                 f"task-hosts {_done_of(p)} -- {_clock(time.monotonic() - self.t0)}")
        t = Table(title=title, title_justify="left", expand=False, box=None, pad_edge=False)
        for col in ("host", "now", "ok", "changed", "failed", "skipped"):
            t.add_column(col, no_wrap=True, overflow="ellipsis", max_width=70 if col == "now" else None)
        for name, h in sorted(list(p.hosts.items())):
            if h.unreachable:
                now = "[red]unreachable[/]"
            elif h.failed:
                now = "[red]failed[/]"
            elif h.current:
                since = time.time() - h.current_since if h.current_since else 0
                now = f"{h.current} [dim]{since:.0f}s[/]"
            else:
                now = "[dim]waiting[/]"
            c = h.counts
            t.add_row(name, now, str(c["ok"]), str(c["changed"]),
                      f"[red]{c['failed']}[/]" if c["failed"] else "0", str(c["skipped"]))
        return t


def diff_text(event: dict[str, Any]) -> str | None:
    """With --diff: a unified diff of a changed result's `diff` (event data is already redacted)."""
    import difflib

    if event.get("event") != "runner_on_ok":
        return None
    data = event.get("event_data") or {}
    res = data.get("res") or {}
    if not isinstance(res, dict) or not res.get("changed") or not res.get("diff"):
        return None
    diffs = res["diff"] if isinstance(res["diff"], list) else [res["diff"]]
    out: list[str] = []
    for d in diffs:
        if not isinstance(d, dict):
            continue
        if d.get("prepared"):
            out.append(str(d["prepared"]).rstrip("\n"))
            continue
        before, after = d.get("before", ""), d.get("after", "")
        if not isinstance(before, str) or not isinstance(after, str):
            before, after = json.dumps(before, indent=1, default=str), json.dumps(after, indent=1, default=str)
        out += [ln.rstrip("\n") for ln in difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True),
            fromfile=f"before: {d.get('before_header', '')}", tofile=f"after: {d.get('after_header', '')}")]
    if not out:
        return None
    return f"--- {data.get('host')}: {data.get('task')}\n" + "\n".join(out)


def _recap_lines(result) -> list[str]:
    lines = []
    width = max((len(h) for h in result.recap), default=4)
    for host, c in result.recap.items():
        lines.append(f"  {host:<{width}}  ok={c['ok']:<4} changed={c['changed']:<4} failed={c['failed']:<3} "
                     f"skipped={c['skipped']:<4} unreachable={c['unreachable']:<2} rescued={c['rescued']} "
                     f"ignored={c['ignored']}")
    return lines


def run(args: argparse.Namespace) -> int:
    from labctl.provisioning.phases import KUBELET_PHASES, select
    from labctl.provisioning.provision import ProvisionOptions, provision

    if args.forks is not None and args.forks < 1:
        from labctl.errors import UserError
        raise UserError(f"--forks: found {args.forks}; give 1 or more")
    phases = select(args.phase, args.until)
    lab = load(args)
    blocker = kubelet_blocker(lab, args.lab) if any(p in KUBELET_PHASES for p in phases) else ""
    if blocker:
        # no partial cluster: stop before kubeadm, with the reason, having changed nothing it would need
        phases = [p for p in phases if p not in KUBELET_PHASES]
        if not phases:
            print(f"labctl provision {lab.name}: stopped before kubeadm: {blocker}", file=sys.stderr)
            return 1
    opts = ProvisionOptions(phases=phases, limit=args.limit, check=args.check, diff=args.diff, forks=args.forks,
                            playbook=args.playbook)
    out = sys.stderr if args.json else sys.stdout
    t0 = time.monotonic()
    live_mode = out.isatty() and not args.no_progress and not args.json
    print(f"labctl provision {lab.name}: phases {', '.join(phases)}"
          f"{' on ' + args.limit if args.limit else ''}{' (check mode: nothing is changed)' if args.check else ''}",
          file=out, flush=True)

    if live_mode:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=out)
        holder: dict[str, Any] = {}
        line = LineRenderer(out, t0)

        def on_event(progress, event, finished) -> None:
            if args.diff and (text := diff_text(event)):
                holder["live"].console.print(text, markup=False, highlight=False)
            view = holder.get("view")
            if view is None:
                view = holder["view"] = LiveView(progress, lab.name, t0)
                holder["live"].update(view)
            line.phase = progress.phase  # keep track without printing
            for f in finished:
                if f.kind == "phase" and f.phase:
                    holder["live"].console.print(f"[green]phase {f.phase} done[/] ({_clock(time.monotonic() - t0)})")

        with Live("starting ansible-playbook...", console=console, refresh_per_second=4, transient=True) as live:
            holder["live"] = live
            result = provision(lab, args.lab, opts, on_event=on_event)
    else:
        lines = LineRenderer(out, t0)

        def on_event_lines(progress, event, finished) -> None:
            if args.diff and (text := diff_text(event)):
                print(text, file=out, flush=True)
            lines(progress, event, finished)

        result = provision(lab, args.lab, opts, on_event=on_event_lines)

    for note in result.notes:
        print(f"note: {note}", file=out)
    print("recap:", file=out)
    for ln in _recap_lines(result):
        print(ln, file=out)
    per = f", {result.wall_seconds / result.task_hosts:.2f}s per task-host" if result.task_hosts else ""
    print(f"{'ok' if result.ok else 'FAILED'}: {result.task_hosts} task-hosts, changed={result.changed_total}, "
          f"{result.wall_seconds:.1f}s (forks {result.forks}{per})", file=out)
    print(f"event log: {result.log_path}", file=out)
    print(f"task times: {result.tasks_path}", file=out)
    if result.failures:
        print("", file=sys.stderr)
        for f in result.failures:
            print(f.format(), file=sys.stderr)
            print("", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    if blocker and result.rc == 0:
        print(f"\nstopped before kubeadm: {blocker}", file=sys.stderr)
        return 1
    return result.rc


def kubelet_blocker(lab, lab_file) -> str:
    """Why the lab's nodes cannot run a kubelet ('' when they can, or where labctl cannot tell)."""
    if lab.provider != "docker":
        return ""
    from labctl.machines.docker import DockerProvider

    return DockerProvider(lab, lab_file).kubelet_blocker()
