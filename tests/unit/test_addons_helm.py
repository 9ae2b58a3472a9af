"""The helm role for real (ansible-playbook on this machine, no cluster involved): the
offline tarball is checked against the pinned sha256, installed, and a second run changes
nothing; a tarball that does not match, or an architecture without a pin, stops with a message."""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
from pathlib import Path

import pytest

from labctl.model import versions
from labctl.state import REPO_ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or platform.machine() not in ("x86_64", "aarch64"),
                                reason="the role installs files owned by root (run as root on amd64/arm64)")

VERSION = versions.ADDONS["helm"].version
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "")
PLAY = """---
- name: Helm role on this machine
  hosts: localhost
  connection: local
  gather_facts: true
  roles:
    - role: helm
"""


def fake_helm_tarball(path: Path) -> str:
    """A release-shaped tarball whose `helm version` prints the pinned version; returns its sha256."""
    script = f"#!/bin/sh\necho v{VERSION}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"linux-{ARCH}/helm")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def run_role(tmp: Path, extra: dict) -> tuple[int, dict, str]:
    (tmp / "play.yml").write_text(PLAY)
    extravars = {
        "lab_addon_versions": {"helm": VERSION},
        "lab_packages_dir": str(tmp / "pkgs"),
        "helm_install_dir": str(tmp / "opt"),
        "helm_cache_dir": str(tmp / "cache"),
        "helm_binary": str(tmp / "bin" / "helm"),
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        **extra,
    }
    (tmp / "vars.json").write_text(json.dumps(extravars))
    (tmp / "bin").mkdir(exist_ok=True)
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
           "ANSIBLE_CACHE_PLUGIN": "memory", "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
           "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-e", f"@{tmp / 'vars.json'}", str(tmp / "play.yml")],
                          capture_output=True, text=True, env=env, timeout=300)
    try:
        out = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        out = {}
    return proc.returncode, out.get("stats", {}).get("localhost", {}), proc.stdout + proc.stderr


def test_offline_tarball_with_the_pinned_checksum_installs_once(tmp_path):
    (tmp_path / "pkgs").mkdir()
    sha = fake_helm_tarball(tmp_path / "pkgs" / f"helm-v{VERSION}-linux-{ARCH}.tar.gz")
    rc, stats, log = run_role(tmp_path, {"helm_checksums": {VERSION: {ARCH: sha}}})
    assert rc == 0, log
    assert stats["changed"] >= 2
    helm = tmp_path / "bin" / "helm"
    version = subprocess.run([str(helm), "version"], capture_output=True, text=True).stdout.strip()
    assert helm.is_symlink() and version == f"v{VERSION}"
    rc, stats, log = run_role(tmp_path, {"helm_checksums": {VERSION: {ARCH: sha}}})
    assert (rc, stats.get("changed")) == (0, 0), log


def test_offline_tarball_that_does_not_match_the_pin_is_refused(tmp_path):
    (tmp_path / "pkgs").mkdir()
    fake_helm_tarball(tmp_path / "pkgs" / f"helm-v{VERSION}-linux-{ARCH}.tar.gz")
    rc, _, log = run_role(tmp_path, {"helm_checksums": {VERSION: {ARCH: "0" * 64}}})
    assert rc != 0
    assert f"not the pinned {'0' * 64}" in log
    assert not (tmp_path / "bin" / "helm").exists()


def test_a_download_without_a_pinned_checksum_is_refused(tmp_path):
    rc, _, log = run_role(tmp_path, {"lab_packages_dir": "", "helm_checksums": {}})
    assert rc != 0
    assert f"labctl pins no sha256 for Helm {VERSION} on {ARCH}" in log
