"""What the host and runtime roles render (base, firewall, containerd), checked without a node.

Each lab shape is rendered once per session by the real playbooks/render.yml, as `labctl render`
does, for these roles only; a shape may pass role variables that a node would otherwise
supply (containerd_installed_version: what the host read finds).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from labctl.model import versions
from labctl.model.config import load_lab
from labctl.provisioning.inventory import render_inventory, write_tree
from labctl.provisioning.render import _failure_report, collected_files, write_collected
from labctl.provisioning.runner import run_playbook
from labctl.state import StateDir

from .conftest import base_lab

ROLES = ["base", "containerd", "firewall"]
PAUSE = f"registry:5000/pause:{versions.KUBERNETES['1.37'].pause}"  # the pin (labctl/model/versions.py)


def _lab(name: str, *, workers: int = 2, os: str = "debian12", provider: str = "docker", firewall="ports") -> dict:
    d = base_lab()
    d.update(name=name, os=os, provider=provider)
    d["host"]["firewall"] = firewall
    d["nodes"] = [d["nodes"][0]] + [
        {"name": f"node{i}", "role": "worker", "ip": f"192.168.56.{30 + i}"} for i in range(1, workers + 1)
    ] + [d["nodes"][2]]
    return d


# name -> (lab.yml, extra variables for the render)
SHAPES = {
    "course": (_lab("course"), {}),
    "single": (_lab("single", workers=0, os="ubuntu2404", provider="vagrant"), {}),
    "rocky": (_lab("rocky", os="rocky9", provider="vagrant", firewall="disabled"), {}),
    # a Debian 12 node offline: the distribution's containerd 1.6 stays (with a warning)
    "debian-1x": (_lab("debian-1x", firewall="disabled"), {"containerd_installed_version": "1.6.20~ds1-1+deb12u1"}),
}


def render(name: str, tmp: Path) -> Path:
    data, extra = SHAPES[name]
    lab_file = tmp / "lab.yml"
    lab_file.write_text(yaml.safe_dump(data, sort_keys=False))
    lab = load_lab(lab_file)
    state = StateDir(lab_file, lab.name)
    state.ensure()
    out = tmp / "rendered"
    write_tree(render_inventory(lab, lab_file), out / "inventory")
    result = run_playbook(state, "render.yml", out / "inventory" / "hosts.yml",
                          extravars={"lab_render_dir": str(out.resolve()), "lab_render_roles": ROLES, **extra})
    assert result.rc == 0, _failure_report(result.events)
    write_collected(collected_files(result.events), out)
    return out


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = render(name, tmp_path_factory.mktemp(name))
        return cache[name]
    return get


# -- item 5: the firewall's port table --------------------------------------------------------------
def _zone_ports(out: Path, host: str) -> set[str]:
    root = ET.parse(out / host / "etc/firewalld/zones/public.xml").getroot()
    return {f"{p.get('port')}/{p.get('protocol')}" for p in root.iter("port")} - {"22/tcp"}


SCRAPE_EVERY_NODE = {"9100/tcp", "10249/tcp", "10256/tcp", "10250/tcp", "8472/udp"}
NODEPORTS = {"30000-32767/tcp", "30000-32767/udp"}


def test_every_kubernetes_node_opens_the_scrape_and_health_ports(rendered):
    out = rendered("course")
    for host in ("master", "node1", "node2"):
        assert SCRAPE_EVERY_NODE <= _zone_ports(out, host), host
    assert {"2381/tcp", "6443/tcp", "2379-2380/tcp", "10257/tcp", "10259/tcp"} <= _zone_ports(out, "master")
    assert not NODEPORTS & _zone_ports(out, "master")  # workers run the NodePorts in a lab that has them
    assert NODEPORTS <= _zone_ports(out, "node1")
    assert "2381/tcp" not in _zone_ports(out, "node1")
    assert _zone_ports(out, "registry") == {"5000/tcp"}


def test_a_control_plane_without_workers_opens_the_nodeports(rendered):
    out = rendered("single")
    assert NODEPORTS | SCRAPE_EVERY_NODE | {"2381/tcp", "6443/tcp"} <= _zone_ports(out, "master")


# -- item 2: containerd 2.x and its version-3 configuration ------------------------------------------
def _config(out: Path, host: str = "master") -> dict:
    return tomllib.loads((out / host / "etc/containerd/config.toml").read_text())


@pytest.mark.parametrize("shape", ["course", "single", "rocky"])
def test_containerd_2_gets_the_version_3_configuration(rendered, shape):
    cfg = _config(rendered(shape))
    assert cfg["version"] == 3
    plugins = cfg["plugins"]
    assert "io.containerd.grpc.v1.cri" not in plugins
    images, runtime = plugins["io.containerd.cri.v1.images"], plugins["io.containerd.cri.v1.runtime"]
    assert images["pinned_images"]["sandbox"] == PAUSE
    assert images["registry"]["config_path"] == "/etc/containerd/certs.d"
    assert runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True


def test_debian_and_ubuntu_get_dockers_containerd_io_repository(rendered):
    for shape, suite, path in (("course", "bookworm", "debian"), ("single", "noble", "ubuntu")):
        src = (rendered(shape) / "master/etc/apt/sources.list.d/docker.sources").read_text()
        assert f"URIs: https://download.docker.com/linux/{path}" in src and f"Suites: {suite}" in src, shape


def test_containerd_1x_keeps_the_version_2_configuration(rendered):
    cfg = _config(rendered("debian-1x"))
    assert cfg["version"] == 2
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == PAUSE
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["registry"]["config_path"] == "/etc/containerd/certs.d"


# -- #12 item 6: registry credentials where the kubelet reads them, none in config.toml ---------------
def _registry_plugin(cfg: dict) -> dict:
    plugins = cfg["plugins"]
    if cfg["version"] == 2:
        return plugins["io.containerd.grpc.v1.cri"]["registry"]
    return plugins["io.containerd.cri.v1.images"]["registry"]


@pytest.mark.parametrize("shape", ["course", "single", "rocky", "debian-1x"])
def test_config_toml_holds_no_registry_credentials(rendered, shape):
    out = rendered(shape)
    text = (out / "master/etc/containerd/config.toml").read_text()
    assert _registry_plugin(_config(out)) == {"config_path": "/etc/containerd/certs.d"}  # no deprecated configs
    assert "password" not in text and "<secret" not in text


@pytest.mark.parametrize("shape", ["course", "debian-1x"])
def test_every_kubernetes_node_gets_the_kubelets_config_json(rendered, shape):
    out = rendered(shape)
    nodes = [n["name"] for n in SHAPES[shape][0]["nodes"] if n["role"] != "registry"]
    for node in nodes:
        doc = json.loads((out / node / "var/lib/kubelet/config.json").read_text())
        assert doc == {"auths": {"registry:5000": {"auth": "<secret: base64 of labctl:registry-password>"}}}, node
    assert not (out / "registry/var/lib/kubelet/config.json").exists()


def test_config_json_is_written_0600_without_logs():
    role = Path(__file__).resolve().parents[2] / "roles/containerd"
    tasks = yaml.safe_load((role / "tasks/kubelet-auth.yml").read_text())
    (write,) = [t for t in tasks if "containerd_kubelet_templates" in str(t)]
    assert write["no_log"] is True
    variables = yaml.safe_load((role / "vars/main.yml").read_text())
    (item,) = variables["containerd_kubelet_templates"]
    assert item == {"template": "kubelet-config.json.j2", "dest": "{{ containerd_kubelet_auth_file }}",
                    "mode": "0600", "diff": False}
    assert variables["containerd_kubelet_dir"] == "/var/lib/kubelet"
    # the runtime phase and the prepull entry point (before kubeadm, after a `kubeadm reset`) both write it
    main = yaml.safe_load((role / "tasks/main.yml").read_text())
    assert any(t.get("ansible.builtin.include_tasks") == "kubelet-auth.yml" for t in main)
    prepull = yaml.safe_load((role / "tasks/prepull.yml").read_text())[0]["block"]
    assert prepull[0]["ansible.builtin.include_tasks"] == "kubelet-auth.yml"
    # crictl gets the credentials in its environment, read on the node: no secret in the task
    pull = next(t for t in prepull if "ansible.builtin.shell" in t)
    cmd = pull["ansible.builtin.shell"]["cmd"]
    assert 'CRICTL_AUTH="$auth" crictl pull' in cmd and "password" not in cmd and "--creds" not in cmd


def test_kubeadm_roles_prepull_before_kubeadm():
    roles = Path(__file__).resolve().parents[2] / "roles"
    init = yaml.safe_load((roles / "kubeadm_init/tasks/main.yml").read_text())
    block = next(t for t in init if t.get("name") == "Initialise the control plane")["block"]
    names = [next(iter(k for k in t if k.startswith("ansible."))) for t in block]
    pre = next(i for i, t in enumerate(block) if t.get("ansible.builtin.include_role", {}).get("tasks_from") == "prepull.yml")
    run = next(i for i, t in enumerate(block) if t.get("name") == "Run kubeadm init")
    assert pre < run and names[pre] == "ansible.builtin.include_role"
    join = yaml.safe_load((roles / "kubeadm_join/tasks/main.yml").read_text())
    outer = next(t for t in join if t.get("name") == "Join the nodes that are not in the cluster yet")["block"]
    inner = next(t for t in outer if t.get("name") == "Join this node")["block"]
    pre = next(i for i, t in enumerate(inner) if t.get("ansible.builtin.include_role", {}).get("tasks_from") == "prepull.yml")
    joins = [i for i, t in enumerate(inner) if "kubeadm, join" in str(t) or "'kubeadm', 'join'" in str(t)]
    assert joins and pre < min(joins)


def test_prepull_pulls_only_missing_lab_registry_images_and_config_json_decodes(tmp_path):
    """The role's own expressions, evaluated by ansible-playbook (local, no node): which images crictl
    pulls, and the config.json the kubelet reads (docker's format, auth = base64 of user:password)."""
    repo = Path(__file__).resolve().parents[2]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "registry-password").write_text("pw-0123456789abcdef\n")
    template = repo / "roles/containerd/templates/kubelet-config.json.j2"
    play = [{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars_files": [str(repo / "roles/containerd/defaults/main.yml"), str(repo / "roles/containerd/vars/main.yml")],
        "vars": {
            "lab_registry": {"enabled": True, "address": "registry:5000", "auth": True, "user": "labctl"},
            "lab_state_dir": str(tmp_path),
            "containerd_prepull_images": ["registry:5000/kube-apiserver:v1.37.2", "registry:5000/pause:3.10.2 ",
                                          "registry.k8s.io/etcd:3.7.0-0"],
            "containerd_prepull_present": {"stdout": json.dumps({"images": [
                {"repoTags": ["registry:5000/pause:3.10.2"]}, {"repoTags": []}]})},
        },
        "tasks": [{"ansible.builtin.copy": {
            "dest": str(tmp_path / "out.json"), "mode": "0600",
            "content": "{{ {'missing': containerd_prepull_missing, 'auth': containerd_kubelet_auth | bool, "
                       "'json': lookup('ansible.builtin.template', '" + str(template) + "')} | to_json }}"}}],
    }]
    pb = tmp_path / "play.yml"
    pb.write_text(yaml.safe_dump(play))
    res = subprocess.run(["ansible-playbook", "-i", "localhost,", str(pb)], capture_output=True, text=True, cwd=repo)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["missing"] == ["registry:5000/kube-apiserver:v1.37.2"]  # pause present; etcd not the lab's
    assert out["auth"] is True
    auth = json.loads(out["json"])["auths"]["registry:5000"]["auth"]
    assert base64.b64decode(auth).decode() == "labctl:pw-0123456789abcdef"


def test_the_install_is_pinned_and_held():
    role = Path(__file__).resolve().parents[2] / "roles/containerd"
    deb = yaml.safe_load((role / "tasks/docker-Debian.yml").read_text())
    rpm = yaml.safe_load((role / "tasks/docker-RedHat.yml").read_text())
    apt = next(t["ansible.builtin.apt"] for t in deb if "ansible.builtin.apt" in t)
    assert apt["name"] == "{{ containerd_docker_package }}={{ containerd_series }}.*"
    assert any(t.get("ansible.builtin.dpkg_selections", {}).get("selection") == "hold" for t in deb)
    repo = next(t["ansible.builtin.yum_repository"] for t in rpm if "ansible.builtin.yum_repository" in t)
    assert repo["exclude"] == ["{{ containerd_docker_package }}"]
    dnf = next(t["ansible.builtin.dnf"] for t in rpm if "ansible.builtin.dnf" in t)
    assert dnf["name"].endswith("-{{ containerd_series }}.*") and dnf["disable_excludes"] == "docker-ce-stable"


# -- item 9: the lab address is the first (only) answer for every node name --------------------------
DEBIAN_VM = "127.0.0.1\tlocalhost\n127.0.1.1\tmaster.example.test master\n::1 localhost ip6-localhost\n"
DOCKER = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n172.17.0.3\tmaster\n"
          "192.168.56.21\tmaster\n192.168.56.9 k8s-lab-api\n")


def _apply(out: Path, hosts_text: str, tmp: Path) -> tuple[str, str]:
    """Run the rendered script on a copy of /etc/hosts; return (new content, its output)."""
    hosts, block = tmp / "hosts", tmp / "hosts.block"
    hosts.write_text(hosts_text)
    block.write_text((out / "master/etc/labctl/hosts.block").read_text())
    script = (out / "master/usr/local/libexec/labctl-hosts").read_text()
    script = script.replace("hosts=/etc/hosts", f"hosts={hosts}").replace("block=/etc/labctl/hosts.block",
                                                                          f"block={block}")
    run = subprocess.run(["sh", "-c", script, "labctl-hosts"], capture_output=True, text=True, check=True)
    return hosts.read_text(), run.stdout


def _answers(hosts_text: str, name: str) -> list[str]:
    return [ln.split()[0] for ln in hosts_text.splitlines()
            if ln.strip() and not ln.startswith("#") and name in ln.split("#")[0].split()[1:]]


@pytest.mark.parametrize("before", [DEBIAN_VM, DOCKER], ids=["debian-vm", "docker"])
def test_hosts_script_leaves_only_the_lab_address(rendered, tmp_path, before):
    out = rendered("course")
    after, said = _apply(out, before, tmp_path)
    assert said.startswith("updated")
    for name, ip in (("master", "192.168.56.21"), ("node1", "192.168.56.31"), ("registry", "192.168.56.100")):
        assert _answers(after, name) == [ip], after
    # other names are kept
    assert "127.0.0.1\tlocalhost" in after
    assert ("k8s-lab-api" in after) if before is DOCKER else ("127.0.1.1 master.example.test" in after)
    again, said = _apply(out, after, tmp_path)
    assert again == after and said == ""  # a second run changes nothing


def test_hosts_script_runs_at_boot(rendered):
    unit = (rendered("course") / "master/etc/systemd/system/labctl-hosts.service").read_text()
    assert re.search(r"^ExecStart=/usr/local/libexec/labctl-hosts$", unit, re.M)
    assert "WantedBy=sysinit.target" in unit
