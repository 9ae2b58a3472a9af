"""How to reach a node: the one place that decides host, port, user, key, known_hosts and ControlPath.

`node_target(lab, node, state)` answers, for one node, with a frozen `NodeTarget`;
`NodeTarget.ssh_options()` is the one derivation of the ssh options from it. Everything
that connects to a node takes them from here:

- the generated inventory (provisioning/inventory.py): hosts.yml's `ansible_host` (and, for provider
  `existing`, each host's `ansible_user` / `ansible_port` / `ansible_ssh_private_key_file`),
  group_vars' `ansible_ssh_common_args` (`ssh_common_args`) and, for the providers whose
  nodes all share one login, `ansible_user` / `ansible_ssh_private_key_file`
  (`login_vars`). Ansible and the testinfra suites of `labctl verify` connect through it;
- provisioning/runner.py: `ANSIBLE_SSH_CONTROL_PATH_DIR` is `control_path_dir(state)`;
- the providers: waiting for the nodes of `labctl up` (`argv(share_master=False)`), the
  names a node's host key is recorded under in known_hosts (`known_as`), ssh-keyscan
  for provider `existing`;
- provisioning/provision.py: ending a stale master (`control_argv("exit")`);
- verify/run.py: the cheap "does sshd answer" probe (`host`, `port`);
- `labctl ssh` (`argv()`).

Who logs in where, per provider:

    docker    root@<ip>, port 22, the lab key (.labctl/<name>/ssh/id_ed25519)
    vagrant   vagrant@<ip>, port 22, the lab key
    existing  <ssh_user or root>@<ssh_host or ip>, port ssh_port, ssh_key -- or, without
              ssh_key, the user's own keys and agent (key None: no -i)

Every connection checks host keys strictly against the lab's known_hosts
(.labctl/<name>/ssh/known_hosts, written by sshkeys.py), never the user's.

Sharing masters: ssh names its master socket `ControlPath=<control_path_dir>/%C`, %C being
a hash of the local host name, the remote host, port and user. Ansible (through
`ansible_ssh_common_args`, whose ControlPath Ansible keeps when one is set) and `labctl
ssh` give the same host, port, user and ControlPath, so `labctl ssh` reuses the master
Ansible opened and the other way round. The readiness loop of `labctl up` opens no master
(`share_master=False`): it polls nodes that are still booting, and a master kept from
then could outlive the boot it saw. `control_path_dir` keeps the socket path within the
unix-socket limit (see there).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labctl.state import StateDir

if TYPE_CHECKING:
    from labctl.model.config import Lab, Node

CONNECT_TIMEOUT = 10  # seconds; what Ansible, testinfra and `labctl ssh` wait for a node's sshd
CONTROL_PERSIST = "300s"  # how long an idle master stays

# sun_path is 108 bytes with its NUL; ssh appends ".XXXXXXXXXXXXXXXX" to the
# ControlPath while it creates the master socket, and %C expands to 40 hex chars.
_SUN_PATH_MAX = 107
_CONTROL_NAME_LEN = 40 + 17


def control_path_dir(state: StateDir) -> Path:
    """Where the SSH ControlPath sockets of this lab live.

    `.labctl/<name>/cp/` when a socket path there fits the unix-socket limit;
    otherwise a short private directory /tmp/labctl-<uid>/<hash of the state dir>.
    The inventory's ansible_ssh_common_args, ANSIBLE_SSH_CONTROL_PATH_DIR and
    `labctl ssh` use this same directory, so `labctl ssh`, testinfra and Ansible share masters.
    """
    preferred = state.control_dir
    if len(str(preferred)) + 1 + _CONTROL_NAME_LEN <= _SUN_PATH_MAX:
        return preferred
    top = Path(f"/tmp/labctl-{os.getuid()}")
    digest = hashlib.sha256(str(state.root).encode()).hexdigest()[:12]
    short = top / digest
    for d in (top, short):
        d.mkdir(mode=0o700, exist_ok=True)
        if d.stat().st_uid != os.getuid():
            raise PermissionError(f"{d} belongs to another user; refusing to put SSH sockets there")
        os.chmod(d, 0o700)
    return short


def ssh_options(known_hosts: Path, control_dir: Path, *, share_master: bool = True,
                connect_timeout: int = CONNECT_TIMEOUT) -> list[str]:
    """The ssh `-o` options of a connection to a node of the lab: strict host key checking against
    the lab's known_hosts and, with share_master, the lab's ControlPath masters."""
    opts = ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    if share_master:
        opts += ["-o", "ControlMaster=auto", "-o", f"ControlPersist={CONTROL_PERSIST}",
                 "-o", f"ControlPath={control_dir}/%C", "-o", "ServerAliveInterval=15"]
    return opts + ["-o", f"ConnectTimeout={connect_timeout}"]


@dataclass(frozen=True)
class NodeTarget:
    """How to reach one node over SSH."""

    name: str  # the node's name in lab.yml
    host: str  # the address ssh connects to
    port: int
    user: str
    key: Path | None  # the private key; None: the user's own keys and agent (existing nodes without ssh_key)
    known_hosts: Path  # the lab's known_hosts, checked strictly
    control_path_dir: Path  # where the lab's ControlPath sockets live (control_path_dir())
    known_as: tuple[str, ...]  # the names its host key is recorded under in known_hosts

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}"

    @property
    def known_name(self) -> str:
        """The name ssh looks this node's host key up by in known_hosts."""
        return _known_name(self.host, self.port)

    @property
    def control_path(self) -> str:
        return f"{self.control_path_dir}/%C"

    def ssh_options(self, *, share_master: bool = True, connect_timeout: int = CONNECT_TIMEOUT) -> list[str]:
        return ssh_options(self.known_hosts, self.control_path_dir, share_master=share_master,
                           connect_timeout=connect_timeout)

    def argv(self, *, share_master: bool = True, batch: bool = True, tty: bool = False,
             connect_timeout: int = CONNECT_TIMEOUT) -> list[str]:
        """The ssh command line for this node (a command to run goes after it)."""
        argv = ["ssh"]
        if self.key is not None:
            argv += ["-i", str(self.key), "-o", "IdentitiesOnly=yes"]
        argv += self.ssh_options(share_master=share_master, connect_timeout=connect_timeout)
        argv += ["-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
        if batch:
            argv += ["-o", "BatchMode=yes"]
        if self.port != 22:
            argv += ["-p", str(self.port)]
        if tty:
            argv.append("-t")
        argv.append(self.destination)
        return argv

    def control_argv(self, operation: str) -> list[str]:
        """`ssh -O <operation>` for this node's master (check, exit, stop)."""
        return ["ssh", "-o", f"ControlPath={self.control_path}", "-p", str(self.port), "-O", operation,
                self.destination]


def _known_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _user(lab: Lab, node: Node) -> str:
    if lab.provider == "existing":
        return node.ssh_user or "root"
    if lab.provider == "vagrant":
        return "vagrant"
    return "root"


def node_target(lab: Lab, node: Node, state: StateDir) -> NodeTarget:
    """How to reach `node` of `lab` (see the module's docstring for the rules per provider)."""
    if lab.provider == "existing":
        host = node.ssh_host or str(node.ip)
        port = node.ssh_port
        key = Path(node.ssh_key).expanduser() if node.ssh_key else None
        known_as: tuple[str, ...] = (_known_name(host, port),)  # ssh-keyscan's record (trust on first use)
    else:
        host, port, key = str(node.ip), 22, state.ssh_key
        known_as = (node.name, _known_name(host, port))  # read from the node itself by `labctl up`
    return NodeTarget(name=node.name, host=host, port=port, user=_user(lab, node), key=key,
                      known_hosts=state.known_hosts, control_path_dir=control_path_dir(state), known_as=known_as)


def node_targets(lab: Lab, state: StateDir) -> dict[str, NodeTarget]:
    """Every node's target, in lab.yml's order."""
    return {n.name: node_target(lab, n, state) for n in lab.nodes}


def target(lab: Lab, node_name: str, state: StateDir) -> NodeTarget:
    """The target of the node named `node_name` (UserError naming the nodes when there is none)."""
    return node_target(lab, lab.node(node_name), state)


# -- the same, as Ansible inventory variables ------------------------------------------------------

def ssh_common_args(state: StateDir) -> str:
    """group_vars' ansible_ssh_common_args: the options every connection to the lab's nodes shares."""
    return " ".join(ssh_options(state.known_hosts, control_path_dir(state)))


def login_vars(t: NodeTarget) -> dict[str, Any]:
    """ansible_user, and ansible_port / ansible_ssh_private_key_file where they differ from ssh's defaults."""
    out: dict[str, Any] = {"ansible_user": t.user}
    if t.port != 22:
        out["ansible_port"] = t.port
    if t.key is not None:
        out["ansible_ssh_private_key_file"] = str(t.key)
    return out
