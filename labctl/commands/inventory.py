"""labctl inventory: (re)generate inventory/<name>/ from lab.yml."""

from __future__ import annotations

import argparse
from pathlib import Path

from labctl.commands._common import add_command, load


def add_parser(sub) -> None:
    p = add_command(sub, "inventory", "render inventory/<name>/hosts.yml and group_vars/all.yml from lab.yml",
                "labctl inventory && ansible-inventory -i inventory/k8s-lab/hosts.yml --graph", run)
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="write hosts.yml and group_vars/ here instead of inventory/<name>/")


def run(args: argparse.Namespace) -> int:
    from labctl.provisioning.inventory import render_inventory, write_inventory, write_tree

    lab = load(args)
    if args.out:
        write_tree(render_inventory(lab, args.lab), args.out)
        print(args.out / "hosts.yml")
    else:
        print(write_inventory(lab, args.lab))
    return 0
