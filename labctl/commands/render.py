"""labctl render: write every file labctl would generate for this lab, for review."""

from __future__ import annotations

import argparse
from pathlib import Path

from labctl.commands._common import add_command, load
from labctl.state import StateDir


def add_parser(sub) -> None:
    p = add_command(sub, "render", "write every generated file (inventory, configs, manifests, Helm values) "
                    "to one directory for review", "labctl render --out /tmp/review && tree /tmp/review", run)
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output directory (default .labctl/<name>/rendered/); replaced on each run")
    p.add_argument("--inventory-only", action="store_true", help="only the inventory (no Ansible run)")


def run(args: argparse.Namespace) -> int:
    from labctl.provisioning.render import render_all

    lab = load(args)
    out = args.out or StateDir(args.lab, lab.name).rendered_dir
    files = render_all(lab, args.lab, out, roles_too=not args.inventory_only)
    for f in files:
        print(f.relative_to(out.parent) if args.out is None else f)
    print(f"{len(files)} files in {out}")
    return 0
