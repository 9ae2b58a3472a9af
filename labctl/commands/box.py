"""labctl box build: labctl's own Vagrant box (Debian 12), built from Debian's packages and cached."""

from __future__ import annotations

import argparse
import time

from labctl.commands._common import add_command


def add_parser(sub) -> None:
    p = add_command(sub, "box", "build labctl's own Vagrant box (labctl/debian12) and add it to Vagrant",
                    "labctl box build            # libvirt; cached: a second build is a no-op", run)
    p.add_argument("action", choices=["build", "path"],
                   help="build: make the box unless cached and add it to Vagrant; path: print the box file")
    p.add_argument("--provider", choices=["libvirt", "virtualbox"], default="libvirt",
                   help="the Vagrant provider the box is for (default libvirt; virtualbox: the same disk as VMDK + OVF)")
    p.add_argument("--rebuild", action="store_true", help="build even when the box is cached")
    p.add_argument("--no-add", action="store_true", help="only make the .box file, do not `vagrant box add` it")


def run(args: argparse.Namespace) -> int:
    from labctl.machines import box

    if args.action == "path":
        print(box.box_path(args.provider, box.recipe_hash()))
        return 0
    start = time.monotonic()

    def line(text: str) -> None:
        print(f"  {text}", flush=True)

    path, version, built = box.build(args.provider, rebuild=args.rebuild, on_line=line, add=not args.no_add)
    took = time.monotonic() - start
    print(f"{box.BOX_NAME} {version} ({args.provider}): {path} "
          f"({'built' if built else 'cached'} in {took:.1f} s)")
    return 0
