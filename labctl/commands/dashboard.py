"""labctl dashboard: the web UI's URL and a short-lived login token (kubectl create token)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.commands._common import add_command, load

if TYPE_CHECKING:
    from labctl.model.config import Lab

# Kept in step with roles/dashboard/defaults/main.yml (a unit test compares them).
VIEWER_ACCOUNT = "labctl-viewer"
ADMIN_ACCOUNT = "labctl-admin"
DURATION_RE = re.compile(r"^[1-9][0-9]*[smh]$")
MAX_DURATION_SECONDS = 24 * 3600


def add_parser(sub) -> None:
    p = add_command(sub, "dashboard", "print the web UI's URL and a short-lived login token "
                    "(read-only account; --admin for the cluster-admin one when lab.yml enables it)",
                    "labctl dashboard            # open the URL, paste the token", run)
    p.add_argument("--admin", action="store_true",
                   help=f"mint the token for {ADMIN_ACCOUNT} (needs addons.dashboard_admin: true)")
    p.add_argument("--duration", default="1h", metavar="D",
                   help="token lifetime, e.g. 30m, 1h (at most 24h; default 1h)")
    p.add_argument("--no-token", action="store_true", help="print the URL only")


def first_node_ip(lab: Lab) -> str:
    """A node that answers on every NodePort: the first control-plane node."""
    return str(lab.control_planes[0].ip)


def dashboard_url(lab: Lab) -> str:
    """Headlamp serves http; the Kubernetes Dashboard's Kong gateway serves https (self-signed)."""
    scheme = "http" if lab.addons.dashboard == "headlamp" else "https"
    return f"{scheme}://{first_node_ip(lab)}:{lab.addons.dashboard_nodeport}/"


def namespace(lab: Lab) -> str:
    return lab.addons.dashboard  # roles/dashboard: dashboard_namespace = the UI's name


def duration_seconds(text: str) -> int:
    if not DURATION_RE.match(text):
        raise ValueError(f"--duration {text!r}: expected a number and s, m or h (e.g. 30m, 1h)")
    return int(text[:-1]) * {"s": 1, "m": 60, "h": 3600}[text[-1]]


def token_command(kubeconfig: Path, account: str, ns: str, duration: str) -> list[str]:
    return ["kubectl", "--kubeconfig", str(kubeconfig), "create", "token", account, "-n", ns, "--duration", duration]


def run(args: argparse.Namespace) -> int:
    import shutil
    import subprocess

    from labctl.errors import RunFailed, UserError
    from labctl.state import StateDir

    lab = load(args, show_warnings=False)
    if lab.addons.dashboard == "none":
        raise UserError(f"{args.lab}: addons.dashboard is none; choose headlamp (or kubernetes-dashboard) "
                        "and run `labctl provision --phase addons`")
    if args.admin and not lab.addons.dashboard_admin:
        raise UserError(f"{args.lab}: addons.dashboard_admin is false, so there is no {ADMIN_ACCOUNT} account; "
                        "set it to true and run `labctl provision --phase addons`, or drop --admin")
    try:
        seconds = duration_seconds(args.duration)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if seconds > MAX_DURATION_SECONDS:
        raise UserError(f"--duration {args.duration}: at most 24h; a login token should be short-lived")
    url = dashboard_url(lab)
    print(f"{lab.addons.dashboard}: {url}  (any node's IP works: NodePort {lab.addons.dashboard_nodeport})")
    if args.no_token:
        return 0
    kubeconfig = StateDir(args.lab, lab.name).kubeconfig
    if not kubeconfig.exists():
        raise UserError(f"{kubeconfig} does not exist yet: it is fetched when the control plane is initialised "
                        "(labctl provision --until control-plane)")
    if shutil.which("kubectl") is None:
        raise UserError("kubectl is not on PATH: install kubectl to mint a token "
                        f"(or run `kubectl create token {VIEWER_ACCOUNT} -n {namespace(lab)}` where it is)")
    account = ADMIN_ACCOUNT if args.admin else VIEWER_ACCOUNT
    cmd = token_command(kubeconfig, account, namespace(lab), args.duration)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RunFailed(f"`{' '.join(cmd[3:])}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    role = "cluster-admin" if args.admin else "read-only"
    print(f"token for {account} ({role}, valid {args.duration}; paste it at the login page):")
    print(proc.stdout.strip())
    return 0
