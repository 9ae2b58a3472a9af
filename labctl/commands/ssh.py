"""labctl ssh: a shell (or one command) on a node with the lab's key and known_hosts.

The node is reached as Ansible reaches it (labctl/machines/reach.py): the same host, port, user, key and
ControlPath, so a session reuses the master connection a provision run opened, and the other way round.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from labctl.commands._common import add_command, load
from labctl.errors import UserError

if TYPE_CHECKING:
    from labctl.machines.reach import NodeTarget


def add_parser(sub) -> None:
    p = add_command(sub, "ssh", "open an SSH session (or run one command) on a node",
                    "labctl ssh master -- kubectl get nodes", run)
    p.add_argument("node", help="node name from lab.yml")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command to run (after --)")


def run(args: argparse.Namespace) -> int:
    from labctl.machines import reach
    from labctl.state import StateDir

    lab = load(args, show_warnings=False)
    state = StateDir(args.lab, lab.name)
    target = reach.target(lab, args.node, state)
    if not state.known_hosts.exists():
        raise UserError(f"no known_hosts for lab {lab.name!r} yet: run `labctl up` first")
    state.ensure()  # the ControlPath directory: ssh gives up when it cannot create a master socket there
    cmd = args.command[1:] if args.command[:1] == ["--"] else list(args.command)
    argv = ssh_argv(target, cmd)
    os.execvp(argv[0], argv)
    return 255  # not reached


def ssh_argv(target: NodeTarget, cmd: list[str]) -> list[str]:
    """What `labctl ssh` execs: a terminal for a shell, batch mode (no prompts) for a command."""
    return target.argv(batch=bool(cmd), tty=not cmd) + cmd
