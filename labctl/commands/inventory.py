"""labctl inventory: (re)generate inventory/<name>/ from lab.yml."""

from __future__ import annotations

import argparse

from labctl.commands._common import add_command, load


def add_parser(sub) -> None:
    add_command(sub, "inventory", "render inventory/<name>/hosts.yml and group_vars/all.yml from lab.yml",
                "labctl inventory && ansible-inventory -i inventory/k8s-lab/hosts.yml --graph", run)


def run(args: argparse.Namespace) -> int:
    from labctl.inventory import write_inventory

    lab = load(args)
    hosts = write_inventory(lab, args.lab)
    print(hosts)
    return 0
