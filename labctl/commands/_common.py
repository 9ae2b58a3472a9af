"""Pieces every command shares: the --lab option, loading the lab, printing findings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.model.config import Lab


def add_command(sub, name: str, help: str, example: str, run) -> argparse.ArgumentParser:  # noqa: A002
    """Add a subcommand with --lab, a help line and an example in its epilog."""
    p = sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--lab", type=Path, default=Path("lab.yml"), metavar="PATH",
                   help="the lab description (default: ./lab.yml)")
    p.set_defaults(func=run)
    return p


def load(args: argparse.Namespace, show_warnings: bool = True) -> Lab:
    """Load and validate --lab; warnings go to stderr, errors raise LabError (exit 2)."""
    from labctl.model.config import lab_warnings, load_lab

    lab = load_lab(args.lab)
    if show_warnings:
        for w in lab_warnings(lab):
            print(f"{args.lab}: {w}", file=sys.stderr)
    return lab
