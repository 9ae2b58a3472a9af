"""labctl down: destroy the lab's machines and its docker network; image caches stay."""

from __future__ import annotations

import argparse
import sys

from labctl.commands._common import add_command, load
from labctl.errors import UserError


def add_parser(sub) -> None:
    p = add_command(sub, "down", "destroy the lab's machines and network (keeps the node image)",
                    "labctl down --yes", run)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console

    from labctl.machines import get_provider

    lab = load(args)
    if lab.provider == "existing":
        raise UserError("provider 'existing': labctl does not destroy real machines")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError("refusing to destroy without confirmation: pass --yes")
        answer = input(f"destroy the {len(lab.nodes)} machines of lab {lab.name!r}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing destroyed")
            return 0
    console = Console(stderr=True)
    start = time.monotonic()
    with console.status("destroying", spinner="dots") as status:
        get_provider(lab, args.lab).down(lambda line: status.update(line[:150]))
    print(f"lab {lab.name}: machines and network removed in {time.monotonic() - start:.1f} s (node image kept)")
    return 0
