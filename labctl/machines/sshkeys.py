"""The lab's SSH key and known_hosts (.labctl/<name>/ssh/).

- id_ed25519 (0600) / id_ed25519.pub: generated once per lab by labctl; authorized for
  root on container nodes and for the `vagrant` user on VMs.
- known_hosts: one line per node, `<name>,<ip> <type> <key>`, written by `labctl up`
  from the key the node itself holds (read through `docker exec` / `vagrant ssh`),
  or from ssh-keyscan for provider `existing` (trust on first use, said so).
  Everything that talks to a node uses StrictHostKeyChecking=yes with this file
  (the ssh options are labctl/machines/reach.py's, as is the name a node is recorded under).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from labctl.errors import UserError
from labctl.state import StateDir


def ensure_keypair(state: StateDir) -> Path:
    """Create the lab key pair if missing; return the private key path."""
    state.ensure()
    key = state.ssh_key
    if key.exists() and key.with_suffix(".pub").exists():
        os.chmod(key, 0o600)
        return key
    if shutil.which("ssh-keygen") is None:
        raise UserError("ssh-keygen not found: apt-get install -y openssh-client")
    for p in (key, key.with_suffix(".pub")):
        p.unlink(missing_ok=True)
    res = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"labctl-{state.lab_name}", "-f", str(key)],
        capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise UserError(f"ssh-keygen failed: {res.stderr.strip()}")
    os.chmod(key, 0o600)
    return key


def public_key(state: StateDir) -> str:
    return state.ssh_key.with_suffix(".pub").read_text().strip()


def authorized_keys_file(state: StateDir) -> Path:
    """ssh/authorized_keys: the lab's public key, bind-mounted read-only into container nodes."""
    path = state.ssh_dir / "authorized_keys"
    content = public_key(state) + "\n"
    if not path.exists() or path.read_text() != content:
        path.write_text(content)
        os.chmod(path, 0o644)
    return path


def _read_known(state: StateDir) -> list[str]:
    try:
        return state.known_hosts.read_text().splitlines()
    except FileNotFoundError:
        return []


def known_host_lines(names: Sequence[str], host_keys: Sequence[str]) -> list[str]:
    """known_hosts lines for one host known by `names` from `ssh_host_*_key.pub` contents."""
    out = []
    for hk in host_keys:
        parts = hk.split()
        if len(parts) >= 2:
            out.append(f"{','.join(names)} {parts[0]} {parts[1]}")
    return out


def record_host(state: StateDir, names: Sequence[str], host_keys: Sequence[str]) -> bool:
    """Replace every known_hosts entry for `names` with `host_keys`; return True if the file changed."""
    wanted = known_host_lines(names, host_keys)
    if not wanted:
        raise UserError(f"no host key found for {names[0]}")
    lines = _read_known(state)
    mine = [ln for ln in lines if set(ln.split(" ", 1)[0].split(",")) & set(names)]
    if mine == wanted:
        return False
    kept = [ln for ln in lines if ln not in mine]
    new = kept + wanted
    tmp = state.known_hosts.with_suffix(".tmp")
    tmp.write_text("\n".join(new) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(state.known_hosts)
    return True


def forget_hosts(state: StateDir, names: Sequence[str]) -> None:
    lines = _read_known(state)
    kept = [ln for ln in lines if not set(ln.split(" ", 1)[0].split(",")) & set(names)]
    if kept != lines:
        state.known_hosts.write_text("".join(ln + "\n" for ln in kept))


def has_host(state: StateDir, name: str) -> bool:
    return any(name in ln.split(" ", 1)[0].split(",") for ln in _read_known(state))
