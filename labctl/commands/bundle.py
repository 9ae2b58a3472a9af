"""labctl bundle build: the offline bundle (binaries, CNI plugins, images) built from pinned Go modules."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bundle",
        help="build the offline bundle (kubeadm, kubelet, containerd, CNI plugins, images) from pinned sources",
        description="Build everything a lab installs offline from labctl/model/pins.yml: Go modules through the Go "
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
    b.add_argument("--lab", type=Path, default=None, metavar="PATH",
                   help="build the bundle this lab description names (kubernetes.bundle, for its minor); "
                        "nothing to do when it names none")
    b.set_defaults(func=run)
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    from labctl.bundle import build as bundle
    from labctl.model import versions

    minor, out = args.minor or versions.DEFAULT_KUBERNETES, args.out
    if args.lab:
        named = lab_bundle(args.lab)
        if named is None:
            print(f"{args.lab}: names no kubernetes.bundle: nothing to build")
            return 0
        minor, path = named
        # the cache's own current-<minor> link is built as usual; any other path is built there
        if path != bundle.bundles_dir() / f"current-{minor}":
            out = path
    bundle.build(minor, out, say=lambda line: print(line, flush=True))
    return 0


def lab_bundle(lab_file: Path) -> tuple[str, Path] | None:
    """(minor, bundle path) a lab names, read with the schema alone: the full check of lab.yml
    refuses a bundle that is not built yet, which is what this command is about to build."""
    from labctl.model.config import schema_lab

    lab = schema_lab(lab_file)
    if not lab.kubernetes.bundle:
        return None
    return lab.kubernetes.minor, Path(lab.kubernetes.bundle).expanduser()
