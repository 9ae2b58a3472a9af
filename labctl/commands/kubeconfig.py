"""labctl kubeconfig: print the lab's kubeconfig path, or merge it into ~/.kube/config as context <lab name>."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

from labctl.commands._common import add_command, load


def add_parser(sub) -> None:
    p = add_command(sub, "kubeconfig", "print the path of the lab's kubeconfig (admin.conf fetched at kubeadm init); "
                    "--merge adds it to ~/.kube/config as context <lab name>",
                    "export KUBECONFIG=$(labctl kubeconfig)   # or: labctl kubeconfig --merge", run)
    p.add_argument("--merge", action="store_true",
                   help="merge into ~/.kube/config (a backup of the old file is kept) and make it the current context")
    p.add_argument("--into", type=Path, default=None, metavar="FILE", help="merge into FILE instead of ~/.kube/config")


def _named(items: list[dict[str, Any]] | None, name: str) -> list[dict[str, Any]]:
    return [i for i in (items or []) if i.get("name") != name]


def merge_kubeconfig(existing: dict[str, Any] | None, lab_config: dict[str, Any], context: str) -> dict[str, Any]:
    """`existing` with the lab's cluster, user and context added as `context` (replacing same-named entries).

    The lab's admin.conf names are generic (kubernetes-admin, kubernetes); they
    become <lab> (cluster and context) and <lab>-admin (user) so several labs and
    other clusters live side by side. Everything else in `existing` is kept.
    """
    for key in ("clusters", "users", "contexts"):
        if not lab_config.get(key):
            raise ValueError(f"the lab kubeconfig has no {key}")
    cur = lab_config.get("current-context") or lab_config["contexts"][0]["name"]
    ctx = next((c for c in lab_config["contexts"] if c["name"] == cur), lab_config["contexts"][0])
    cluster = next(c for c in lab_config["clusters"] if c["name"] == ctx["context"]["cluster"])
    user = next(u for u in lab_config["users"] if u["name"] == ctx["context"]["user"])
    user_name = f"{context}-admin"

    out = copy.deepcopy(existing) if existing else {}
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    out.setdefault("preferences", {})
    out["clusters"] = _named(out.get("clusters"), context) + [{"name": context, "cluster": copy.deepcopy(cluster["cluster"])}]
    out["users"] = _named(out.get("users"), user_name) + [{"name": user_name, "user": copy.deepcopy(user["user"])}]
    new_ctx = {"cluster": context, "user": user_name}
    if ctx["context"].get("namespace"):
        new_ctx["namespace"] = ctx["context"]["namespace"]
    out["contexts"] = _named(out.get("contexts"), context) + [{"name": context, "context": new_ctx}]
    out["current-context"] = context
    return out


def merge_into(target: Path, lab_kubeconfig: Path, context: str) -> Path | None:
    """Merge lab_kubeconfig into target (0600); return the backup path of the old target, if any."""
    import shutil
    import time

    import yaml

    from labctl.errors import UserError
    from labctl.state import write_private

    lab_config = yaml.safe_load(lab_kubeconfig.read_text())
    existing = None
    backup = None
    if target.exists():
        try:
            existing = yaml.safe_load(target.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{target} is not valid YAML ({exc}); fix or move it, then merge again") from None
        if not isinstance(existing, dict):
            raise UserError(f"{target} is not a kubeconfig (a mapping); fix or move it, then merge again")
        backup = target.with_name(f"{target.name}.labctl-backup-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(target, backup)
        backup.chmod(0o600)
    try:
        merged = merge_kubeconfig(existing, lab_config, context)
    except (ValueError, KeyError, StopIteration, TypeError) as exc:
        raise UserError(f"{lab_kubeconfig} is not a usable kubeconfig: {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    write_private(target, yaml.safe_dump(merged, sort_keys=False, default_flow_style=False))
    return backup


def run(args: argparse.Namespace) -> int:
    from labctl.errors import UserError
    from labctl.state import StateDir

    lab = load(args, show_warnings=False)
    path = StateDir(args.lab, lab.name).kubeconfig
    if not path.exists():
        raise UserError(f"{path} does not exist yet: it is fetched when the control plane is initialised "
                        "(labctl provision --until control-plane)")
    if not args.merge:
        print(path)
        return 0
    target = args.into or Path.home() / ".kube" / "config"
    backup = merge_into(target, path, lab.name)
    print(f"merged lab {lab.name} into {target} as context {lab.name!r} (now current)"
          + (f"; previous file kept as {backup}" if backup else ""))
    return 0
