"""kubernetes_packages installs crictl and the CNI plugins explicitly (kubeadm's packages stopped
depending on cri-tools and kubernetes-cni in 1.32), at the lab's minor, held -- and a local
packages_dir must hold them. The role's own expressions are evaluated by Ansible's templar."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from .conftest import trusted_template

ROLE = Path(__file__).resolve().parents[2] / "roles" / "kubernetes_packages"


def _templar(**extra) -> Templar:
    variables = {"lab_kubernetes_minor": "1.37", "lab_kubernetes_version": "1.37.2", "lab_packages_dir": "",
                 "lab_os": "debian12"}
    variables |= trusted_template(yaml.safe_load((ROLE / "defaults/main.yml").read_text()))
    variables |= trusted_template(yaml.safe_load((ROLE / "vars/main.yml").read_text()))
    variables |= extra
    return Templar(loader=DataLoader(), variables=variables)


def _task(file: str, module: str) -> dict:
    return trusted_template(next(t for t in yaml.safe_load((ROLE / "tasks" / file).read_text()) if module in t))


def test_apt_installs_cri_tools_at_the_minor_and_kubernetes_cni_and_holds_them():
    t = _templar()
    names = t.template(_task("Debian.yml", "ansible.builtin.apt")["ansible.builtin.apt"]["name"])
    assert "cri-tools=1.37.*" in names and "kubernetes-cni" in names and "kubeadm=1.37.2-*" in names
    held = t.template(_task("Debian.yml", "ansible.builtin.dpkg_selections")["loop"])
    assert set(held) == {"kubelet", "kubeadm", "kubectl", "cri-tools", "kubernetes-cni"}


def test_dnf_installs_cri_tools_at_the_minor_and_kubernetes_cni():
    names = _templar().template(_task("RedHat.yml", "ansible.builtin.dnf")["ansible.builtin.dnf"]["name"])
    assert "cri-tools-1.37.*" in names and "kubernetes-cni" in names and "kubelet-1.37.2" in names


FULL = ["kubeadm_1.37.2-1.1_amd64.deb", "kubelet_1.37.2-1.1_amd64.deb", "kubectl_1.37.2-1.1_amd64.deb",
        "cri-tools_1.37.0-1.1_amd64.deb", "kubernetes-cni_1.7.1-1.1_amd64.deb"]


@pytest.mark.parametrize(("files", "missing"), [
    (FULL, []),
    (FULL[:3], ["cri-tools", "kubernetes-cni"]),
    (FULL[:3] + ["cri-tools_1.36.0-1.1_amd64.deb", FULL[4]], ["cri-tools"]),  # crictl of another minor
])
def test_a_package_directory_must_hold_cri_tools_of_the_minor_and_kubernetes_cni(files, missing):
    local = {"files": [{"path": f"/pkgs/{f}"} for f in files]}
    got = _templar(kubernetes_packages_local=local).template(trusted_template("{{ kubernetes_packages_local_missing }}"))
    assert got == missing
