"""labctl up: bring the lab's machines up (Vagrant: docker containers or VMs; existing: check them)."""

from __future__ import annotations

import argparse
import os
import time

from labctl.commands._common import add_command, load


def add_parser(sub) -> None:
    p = add_command(sub, "up", "bring the lab's machines up, wait until they answer SSH, write the inventory",
                    "labctl up --lab lab.yml", run)
    p.add_argument("--rebuild-image", action="store_true",
                   help="provider docker: rebuild the node image even if it is cached")
    p.add_argument("--node-image", choices=["prepared", "plain"], default="prepared",
                   help="provider docker: nodes from the image with the roles' packages already installed "
                        "(prepared, default: a first provision skips most of dpkg) or the bare Debian image (plain)")
    p.add_argument("--vm-provider", choices=["virtualbox", "libvirt"],
                   default=os.environ.get("LABCTL_VM_PROVIDER") or None,
                   help="provider vagrant: the hypervisor (default: $LABCTL_VM_PROVIDER, else virtualbox where "
                        "VBoxManage is installed, else libvirt)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from labctl.commands.status import print_table
    from labctl.machines import get_provider

    lab = load(args)
    provider = get_provider(lab, args.lab, rebuild_image=args.rebuild_image, vm_provider=args.vm_provider,
                            node_image=args.node_image)
    console = Console(stderr=True)
    start = time.monotonic()
    with console.status("checking the lab", spinner="dots") as status:
        def progress(line: str) -> None:
            status.update(f"[bold]{lab.name}[/] [dim]{int(time.monotonic() - start)} s[/] {line[:150]}")
            if line.startswith(("building ", "built ", "vagrant ", "libvirt: ")):
                console.print(f"  {line}", highlight=False)
        rows = provider.up(progress)
    print_table(f"lab {lab.name} ({lab.provider}) up in {time.monotonic() - start:.1f} s", rows)
    return 0
