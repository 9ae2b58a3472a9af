"""The command line. The only module that talks to the terminal for errors and exit codes.

Each command lives in labctl/commands/<name>.py with `add_parser(subparsers)`;
heavy imports (ansible-runner, pytest, rich) happen inside the command's run
function, so `labctl --help` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from labctl import __version__
from labctl.errors import LabctlError

# Order is the order shown in --help.
COMMANDS = (
    "init", "check", "inventory", "render",
    "up", "down", "status", "ssh", "box",
    "provision", "verify",
    "images", "kubeconfig", "dashboard", "grafana",
    "bundle",
)

EPILOG = """\
a lab in four commands:
  labctl init --provider docker   # write lab.yml (the course topology)
  labctl up                       # bring the machines up
  labctl provision                # hosts, runtime, registry, kubernetes, addons
  labctl verify                   # prove every layer works
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labctl",
        description="Describe a Kubernetes lab once (lab.yml); bring it up, provision it and verify it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"labctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"labctl.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LabctlError as exc:
        print(f"labctl {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"labctl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
