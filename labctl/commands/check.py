"""labctl check: validate lab.yml and its cross-checks before any host is touched."""

from __future__ import annotations

import argparse

from labctl.commands._common import add_command


def add_parser(sub) -> None:
    add_command(sub, "check", "validate lab.yml (schema and cross-checks); touches no host",
                "labctl check --lab labs/three-workers.yml", run)


def run(args: argparse.Namespace) -> int:
    from labctl.model.config import lab_warnings, load_lab

    lab = load_lab(args.lab)  # raises LabError (exit 2) with every error
    warnings = lab_warnings(lab)
    for w in warnings:
        print(f"{args.lab}: {w}")
    roles = ", ".join(f"{len(lab.by_role(r))} {r}" for r in ("control-plane", "worker", "registry"))
    print(f"{args.lab}: ok -- lab {lab.name!r}, provider {lab.provider}, {lab.os}, Kubernetes "
          f"{lab.kubernetes.version}, {roles}" + (f"; {len(warnings)} warning(s)" if warnings else ""))
    return 0
