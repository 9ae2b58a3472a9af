"""Real machines (provider `existing`): labctl creates nothing, it checks.

`up` checks, in parallel and bounded, that every node answers SSH (ssh_host, ssh_user,
ssh_port, ssh_key) and allows passwordless sudo, records host keys and writes the
inventory. Host keys of machines labctl did not create can only be learnt with
ssh-keyscan: that is trust on first use, done once per host (an entry already in
.labctl/<name>/ssh/known_hosts is kept and enforced). Check the fingerprints it prints
if the network is not trusted.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from labctl.errors import UserError
from labctl.machines import NodeStatus, Progress, common, reach, sshkeys
from labctl.model.config import Lab
from labctl.state import StateDir


class ExistingProvider:
    def __init__(self, lab: Lab, lab_file: Path):
        self.lab = lab
        self.lab_file = lab_file
        self.state = StateDir(lab_file, lab.name)

    def _keyscan(self, t: reach.NodeTarget) -> str | None:
        """Record the host key by ssh-keyscan (trust on first use); return an error or None."""
        if sshkeys.has_host(self.state, t.known_name):
            return None
        res = subprocess.run(["ssh-keyscan", "-T", "5", "-p", str(t.port), "-t", "ed25519,ecdsa,rsa", t.host],
                             capture_output=True, text=True, timeout=30)
        keys = [" ".join(ln.split()[1:]) for ln in res.stdout.splitlines() if ln and not ln.startswith("#")]
        if not keys:
            return f"no SSH answer from {t.host}:{t.port} ({res.stderr.strip().splitlines()[-1:] or 'timeout'})"
        sshkeys.record_host(self.state, t.known_as, keys)
        return None

    def up(self, progress: Progress) -> list[NodeStatus]:
        from labctl.provisioning.inventory import write_inventory

        common.require_binary("ssh", "apt-get install -y openssh-client")
        sshkeys.ensure_keypair(self.state)
        targets = reach.node_targets(self.lab, self.state)
        for i, n in enumerate(self.lab.nodes):
            key = targets[n.name].key
            if key is not None and not key.is_file():
                raise UserError(f"nodes[{i}].ssh_key: {n.ssh_key} does not exist")
        progress("recording host keys with ssh-keyscan (trust on first use; existing entries are enforced)")
        with ThreadPoolExecutor(max_workers=8) as pool:
            scan_errors = dict(zip(targets, pool.map(self._keyscan, targets.values()), strict=True))
        reachable = {name: t for name, t in targets.items() if scan_errors[name] is None}
        progress("checking SSH and passwordless sudo on every node")
        results = common.wait_ready(self.lab, reachable, timeout=30, progress=progress,
                                    systemd=False, sudo=True) if reachable else {}
        for n in self.lab.nodes:
            if scan_errors[n.name]:
                results[n.name] = NodeStatus(n.name, n.role, str(n.ip), "unreachable", scan_errors[n.name] or "")
        write_inventory(self.lab, self.lab_file)
        ordered = [results[n.name] for n in self.lab.nodes]
        common.raise_on_failures(ordered)
        return ordered

    def down(self, progress: Progress) -> None:
        raise UserError("provider 'existing': labctl does not destroy real machines")

    def status(self) -> list[NodeStatus]:
        results = common.wait_ready(self.lab, reach.node_targets(self.lab, self.state), timeout=10,
                                    progress=lambda _l: None, systemd=False, sudo=True)
        return [results[n.name] for n in self.lab.nodes]


