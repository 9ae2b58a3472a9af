"""labctl grafana: Grafana's URL, user and where its generated admin password is kept."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from labctl.commands._common import add_command, load

if TYPE_CHECKING:
    from labctl.model.config import Lab

PASSWORD_SECRET = "grafana-admin-password"  # .labctl/<name>/secrets/<this>, read by roles/monitoring
ADMIN_USER = "admin"


def add_parser(sub) -> None:
    p = add_command(sub, "grafana", "print Grafana's URL, its admin user and the file holding the generated password",
                    "labctl grafana   # or: labctl grafana --show-password", run)
    p.add_argument("--show-password", action="store_true", help="also print the password itself")


def grafana_url(lab: Lab) -> str:
    return f"http://{lab.control_planes[0].ip}:{lab.addons.grafana_nodeport}/"


def run(args: argparse.Namespace) -> int:
    from labctl.errors import UserError
    from labctl.state import StateDir

    lab = load(args, show_warnings=False)
    if lab.addons.monitoring == "none":
        raise UserError(f"{args.lab}: addons.monitoring is none; choose kube-prometheus-stack "
                        "and run `labctl provision --phase addons`")
    path = StateDir(args.lab, lab.name).secret_path(PASSWORD_SECRET)
    print(f"grafana:  {grafana_url(lab)}  (any node's IP works: NodePort {lab.addons.grafana_nodeport})")
    print(f"user:     {ADMIN_USER}")
    print(f"password: in {path}" + ("" if path.exists() else "  (not generated yet: labctl provision writes it)"))
    if args.show_password:
        if not path.exists():
            raise UserError(f"{path} does not exist yet: it is generated before the addons phase runs")
        print(path.read_text().strip())
    return 0
