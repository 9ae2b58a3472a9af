"""labctl verify: run the testinfra suites per layer and report what works, with evidence."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from labctl.commands._common import add_command

HELP = "prove every layer of the lab works (testinfra checks per layer; report, --junit, --html)"

RULES = """\
layers, in order: host, runtime, registry, storage, control-plane, network, addons, workloads
  (one module each: tests/infra/test_<layer>.py)

before a layer runs, cheap facts decide whether it CAN run; a layer that cannot is
skipped with the reason, never run and never counted as passed:
  - no node answers SSH                     -> node layers skipped (counts as failure)
  - no .labctl/<lab>/kubeconfig             -> cluster layers skipped: provision stopped before kubeadm
  - kubeconfig, but the API server is silent -> cluster layers skipped (counts as failure)
  - no flannel DaemonSet / no addon found    -> network+workloads / addons skipped: provision stopped before them

exit code:
  0  every SELECTED layer passed. With --layer, every named layer must pass: a skipped
     one is not a pass. Without --layer, the layers this lab does not have yet (no
     cluster, no addons) are listed as skipped with the reason and do not fail the run.
  1  a check failed, a selected layer was skipped (--layer), something that should answer
     did not, or nothing ran at all
  2  bad input (lab.yml, --layer)

examples:
  labctl verify
  labctl verify --layer host,runtime,registry --junit out/verify.xml --html out/verify.html
  labctl verify --layer workloads --slow        # also wait for the HPA to scale back down"""


def add_parser(sub) -> None:
    p = add_command(sub, "verify", HELP, "labctl verify --layer host,runtime,registry", run)
    p.epilog = RULES
    p.add_argument("--layer", metavar="A,B", help="only these layers (comma-separated; see the list below)")
    p.add_argument("--junit", type=Path, metavar="FILE", help="write pytest's JUnit XML here (for CI)")
    p.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report here")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON here")
    p.add_argument("-n", "--workers", default="auto", metavar="N",
                   help="pytest-xdist workers: a number, 0 (serial) or 'auto' (default: half the cores, at most 4; "
                        "serial on 2 cores, where it measured faster)")
    p.add_argument("--slow", action="store_true", help="also run the slow waits (HPA scale-down after load)")


def run(args: argparse.Namespace) -> int:
    from labctl.commands._common import load
    from labctl.display.report import render_html, render_text, rich_renderables
    from labctl.errors import UserError
    from labctl.verify.run import parse_selection, verify

    if args.workers != "auto" and not str(args.workers).isdigit():
        raise UserError(f"--workers: found {args.workers!r}; allowed: a number or 'auto'")
    parse_selection(args.layer)  # bad --layer: exit 2 before anything runs
    lab = load(args)
    tty = sys.stdout.isatty()

    def on_plan(plan, workers: str) -> None:
        run = [p.layer for p in plan if p.run]
        how = "serial" if workers == "0" else f"{workers} workers"
        if run:
            print(f"verify {lab.name}: checking {', '.join(run)} ({how})", file=sys.stderr, flush=True)
        reasons: dict[str, list[str]] = {}
        for p in plan:
            if not p.run:
                reasons.setdefault(p.reason, []).append(p.layer)
        for reason, names in reasons.items():
            print(f"verify {lab.name}: skipping {', '.join(names)}: {reason}", file=sys.stderr, flush=True)
    suites = os.environ.get("LABCTL_VERIFY_SUITES")  # another tests/infra (development of the suites)
    extra = {"infra_dir": Path(suites).resolve()} if suites else {}
    report = verify(args.lab, lab, args.layer, str(args.workers), junit_out=args.junit, slow=args.slow,
                    on_plan=on_plan, **extra)
    if tty:
        from rich.console import Console

        console = Console()
        for part in rich_renderables(report):
            console.print(part)
    else:
        sys.stdout.write(render_text(report))
    if args.html:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(render_html(report))
        print(f"html report: {args.html}")
    if args.json:
        import json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=1))
    if args.junit:
        print(f"junit: {args.junit}")
    return report.exit_code
