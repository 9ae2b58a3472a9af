"""labctl status: the lab's machines (name, role, IP, state) from the live state."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from labctl.commands._common import add_command, load

if TYPE_CHECKING:
    from labctl.machines import NodeStatus


def add_parser(sub) -> None:
    add_command(sub, "status", "show every node: name, role, IP and live state", "labctl status", run)


def print_table(title: str, rows: list[NodeStatus]) -> None:
    """The node table `up` and `status` print."""
    from rich.console import Console
    from rich.table import Table

    colour = {"running": "green", "degraded": "yellow"}
    table = Table(title=title, title_justify="left")
    for col in ("name", "role", "IP", "state", "detail"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.name, r.role, r.ip, f"[{colour.get(r.state, 'red')}]{r.state}[/]", r.detail)
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    from labctl.machines import get_provider

    lab = load(args)
    rows = get_provider(lab, args.lab).status()
    print_table(f"lab {lab.name} ({lab.provider})", rows)
    return 0 if all(r.state in ("running", "degraded") for r in rows) else 1
