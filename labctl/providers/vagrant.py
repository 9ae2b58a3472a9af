"""VMs through Vagrant: VirtualBox (default) or libvirt (`--vm-provider libvirt` / LABCTL_VM_PROVIDER).

Vagrant's insecure key stays Vagrant's: after `vagrant up`, labctl runs one `vagrant ssh`
per node that authorizes the lab key for the `vagrant` user and prints the node's host
keys, which go into known_hosts (read from the node itself, not scanned). Ansible then
connects as `vagrant` (become) over the lab IP with the lab key.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from labctl import sshkeys
from labctl.config import Lab, Node
from labctl.errors import RunFailed, UserError
from labctl.providers import NodeStatus, Progress, SshTarget, common
from labctl.state import StateDir

INSTALL_HINT = {
    "virtualbox": "install VirtualBox (https://www.virtualbox.org) and vagrant (apt-get install -y vagrant)",
    "libvirt": "apt-get install -y vagrant vagrant-libvirt libvirt-daemon-system",
}
BINARY = {"virtualbox": "VBoxManage", "libvirt": "virsh"}


class VagrantProvider:
    def __init__(self, lab: Lab, lab_file: Path, vm_provider: str | None = None):
        self.lab = lab
        self.lab_file = lab_file
        self.state = StateDir(lab_file, lab.name)
        self.vm_provider = vm_provider or os.environ.get("LABCTL_VM_PROVIDER") or "virtualbox"
        if self.vm_provider not in INSTALL_HINT:
            raise UserError(f"LABCTL_VM_PROVIDER: found {self.vm_provider!r}; allowed: virtualbox, libvirt")

    def _env(self) -> dict[str, str]:
        return common.vagrant_env(self.lab_file, self.state, {"VAGRANT_DEFAULT_PROVIDER": self.vm_provider})

    def _cwd(self) -> Path:
        return self.lab_file.resolve().parent

    def machine_states(self) -> dict[str, str]:
        """{node: state} from `vagrant status --machine-readable` (running, poweroff, not_created, ...)."""
        res = subprocess.run(["vagrant", "status", "--machine-readable"], env=self._env(), cwd=self._cwd(),
                             capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise UserError(f"vagrant status failed: {res.stderr.strip() or res.stdout.strip()[-500:]}")
        out: dict[str, str] = {}
        for line in res.stdout.splitlines():
            parts = line.split(",")
            if len(parts) >= 4 and parts[2] == "state":
                out[parts[1]] = parts[3]
        return out

    def _authorize_and_read_host_keys(self, node: Node) -> None:
        pub = sshkeys.public_key(self.state)
        script = (
            "set -e; install -d -m 0700 ~/.ssh; touch ~/.ssh/authorized_keys; chmod 0600 ~/.ssh/authorized_keys; "
            f"grep -qxF {shlex.quote(pub)} ~/.ssh/authorized_keys || echo {shlex.quote(pub)} >> ~/.ssh/authorized_keys; "
            "cat /etc/ssh/ssh_host_*_key.pub"
        )
        res = subprocess.run(["vagrant", "ssh", node.name, "-c", script, "--", "-o", "LogLevel=ERROR"],
                             env=self._env(), cwd=self._cwd(), capture_output=True, text=True, timeout=120)
        keys = [ln.strip() for ln in res.stdout.splitlines() if ln.startswith(("ssh-", "ecdsa-"))]
        if res.returncode != 0 or not keys:
            raise RunFailed(f"node {node.name}: could not authorize the lab key through `vagrant ssh`: "
                            f"{res.stderr.strip()[-500:] or res.stdout.strip()[-500:]}")
        sshkeys.record_host(self.state, [node.name, str(node.ip)], keys)

    def up(self, progress: Progress) -> list[NodeStatus]:
        from labctl.inventory import write_inventory

        common.require_binary("vagrant", INSTALL_HINT[self.vm_provider])
        common.require_binary(BINARY[self.vm_provider], INSTALL_HINT[self.vm_provider])
        sshkeys.ensure_keypair(self.state)
        states = self.machine_states()
        todo = [n for n in self.lab.nodes if states.get(n.name) != "running"]
        missing = [n for n in todo if states.get(n.name) in (None, "not_created")]
        if todo:
            common.check_subnet_free(self.lab.network.cidr, None)
            common.check_ips_free_on_host(missing)
            common.check_memory(missing)
            progress(f"vagrant up --provider {self.vm_provider} {' '.join(n.name for n in todo)}")
            common.run_vagrant(["up", "--provider", self.vm_provider, *[n.name for n in todo]], self._env(),
                               self._cwd(), timeout=3600, progress=progress)
        need_keys = [n for n in self.lab.nodes if n in todo or not sshkeys.has_host(self.state, str(n.ip))]
        if need_keys:
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(self._authorize_and_read_host_keys, need_keys))
        results = common.wait_ready(self.state, self.lab,
                                    {n.name: SshTarget("vagrant", str(n.ip)) for n in self.lab.nodes},
                                    timeout=300, progress=progress, sudo=True)
        write_inventory(self.lab, self.lab_file)
        ordered = [results[n.name] for n in self.lab.nodes]
        common.raise_on_failures(ordered)
        return ordered

    def down(self, progress: Progress) -> None:
        common.require_binary("vagrant", INSTALL_HINT[self.vm_provider])
        progress("vagrant destroy -f")
        common.run_vagrant(["destroy", "-f"], self._env(), self._cwd(), timeout=1200, progress=progress)
        sshkeys.forget_hosts(self.state, [x for n in self.lab.nodes for x in (n.name, str(n.ip))])

    def status(self) -> list[NodeStatus]:
        common.require_binary("vagrant", INSTALL_HINT[self.vm_provider])
        states = self.machine_states()
        return [NodeStatus(n.name, n.role, str(n.ip), states.get(n.name, "not created").replace("_", " "))
                for n in self.lab.nodes]

    def ssh_target(self, node_name: str) -> SshTarget:
        return SshTarget("vagrant", str(self.lab.node(node_name).ip))
