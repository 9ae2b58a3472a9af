"""labctl bundle build: the offline bundle (binaries, CNI plugins, images) built from pinned Go modules."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bundle",
        help="build the offline bundle (kubeadm, kubelet, containerd, CNI plugins, images) from pinned sources",
        description="Build everything a lab installs offline from labctl/pins.yml: Go modules through the Go "
                    "module proxy, Debian packages for the bases. See docs/bundle.md.",
        epilog="example:\n  labctl bundle build            # ~/.cache/labctl/bundles/current-1.37",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bsub = p.add_subparsers(dest="bundle_command", metavar="SUBCOMMAND")
    b = bsub.add_parser("build", help="build the bundle (a no-op when the pinned one is built already)")
    b.add_argument("--out", type=Path, metavar="DIR",
                   help="build into DIR (default: ~/.cache/labctl/bundles/<digest>, linked as current-<minor>)")
    b.add_argument("--minor", default=None, metavar="1.37",
                   help="the Kubernetes minor whose pinned patch to build (default: labctl's default minor)")
    b.set_defaults(func=run)
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    from labctl import bundle, versions

    minor = args.minor or versions.DEFAULT_KUBERNETES
    bundle.build(minor, args.out, say=lambda line: print(line, flush=True))
    return 0
