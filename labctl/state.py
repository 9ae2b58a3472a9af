"""The lab's state directory `.labctl/<name>/` beside lab.yml.

Layout (created 0700; secrets 0600):
    ca.crt               the lab CA certificate (its key is secrets/ca.key)
    registry-certs/      ca.crt again, alone: skopeo's --dest-cert-dir when the controller pushes images
    ssh/                 id_ed25519[.pub], known_hosts
    secrets/             registry-password, grafana-admin-password, ca.key, registry-auth.json (skopeo's login) ...
    logs/                one event log per run
    rendered/            default output of `labctl render`
    facts/               Ansible's fact cache
    cp/                  SSH ControlPath sockets
    kubeconfig           admin.conf fetched from the control plane
    vagrant.json         what the Vagrantfile reads, resolved by labctl (machines/vagrantfile.py)
    vagrant/             Vagrant's own state (VAGRANT_DOTFILE_PATH)
"""

from __future__ import annotations

import os
import secrets as _secrets
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StateDir:
    lab_file: Path
    lab_name: str

    @property
    def root(self) -> Path:
        return self.lab_file.resolve().parent / ".labctl" / self.lab_name

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def ssh_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def rendered_dir(self) -> Path:
        return self.root / "rendered"

    @property
    def facts_dir(self) -> Path:
        return self.root / "facts"

    @property
    def control_dir(self) -> Path:
        return self.root / "cp"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def vagrant_config(self) -> Path:
        """The lab as the Vagrantfile reads it (machines/vagrantfile.py writes it)."""
        return self.root / "vagrant.json"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def inventory_dir(self) -> Path:
        """The generated inventory lives in the checkout: inventory/<name>/."""
        return self.lab_file.resolve().parent / "inventory" / self.lab_name

    @property
    def hosts_file(self) -> Path:
        return self.inventory_dir / "hosts.yml"

    def ensure(self) -> None:
        """Create the directory tree with private permissions (idempotent)."""
        top = self.root.parent
        top.mkdir(mode=0o700, exist_ok=True)
        ignore = top / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# labctl state: keys, secrets, logs. Never commit.\n*\n")
        for d in (self.root, self.ssh_dir, self.secrets_dir, self.logs_dir, self.facts_dir, self.control_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)

    def secret(self, name: str, length: int = 24) -> str:
        """Return secrets/<name>, generating it (0600) on first use."""
        self.ensure()
        path = self.secrets_dir / name
        if not path.exists():
            value = _secrets.token_urlsafe(length)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(value)
            return value
        return path.read_text().strip()

    def secret_path(self, name: str) -> Path:
        return self.secrets_dir / name


def write_private(path: Path, content: str) -> None:
    """Write a file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
    os.chmod(path, 0o600)
