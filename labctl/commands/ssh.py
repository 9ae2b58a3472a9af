"""labctl ssh: a shell (or one command) on a node with the lab's key and known_hosts."""

from __future__ import annotations

import argparse
import os

from labctl.commands._common import add_command, load
from labctl.errors import UserError


def add_parser(sub) -> None:
    p = add_command(sub, "ssh", "open an SSH session (or run one command) on a node",
                    "labctl ssh master -- kubectl get nodes", run)
    p.add_argument("node", help="node name from lab.yml")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command to run (after --)")


def run(args: argparse.Namespace) -> int:
    from labctl import sshkeys
    from labctl.providers import get_provider
    from labctl.state import StateDir

    lab = load(args, show_warnings=False)
    state = StateDir(args.lab, lab.name)
    target = get_provider(lab, args.lab).ssh_target(args.node)
    if not state.known_hosts.exists():
        raise UserError(f"no known_hosts for lab {lab.name!r} yet: run `labctl up` first")
    cmd = args.command[1:] if args.command[:1] == ["--"] else list(args.command)
    argv = sshkeys.ssh_argv(state, target.user, target.host, port=target.port, key=target.key,
                            default_identity=target.default_identity, batch=bool(cmd), connect_timeout=10,
                            tty=not cmd)
    os.execvp(argv[0], argv + cmd)
    return 255  # not reached
