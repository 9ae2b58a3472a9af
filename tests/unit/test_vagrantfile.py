"""The Vagrantfile maps the file labctl resolved onto Vagrant's DSL, and `vagrant validate` accepts it.

labctl/machines/vagrantfile.py resolves a lab (the validated lab.yml with its defaults, and the
providers' decisions: box, libvirt driver and management network, node image, --privileged) into
`.labctl/<name>/vagrant.json`; the Vagrantfile reads only that file (LABCTL_VAGRANT_CONFIG).

- `vagrant validate` runs the real `vagrant` binary (skipped only where it is absent; CI installs it)
  on files the resolver wrote for the shipped labs (examples/container-lab.yml, lab.yml on libvirt
  with kvm and qemu, on VirtualBox) and for lab.yml files written by `labctl init`. Vagrant refuses
  to validate for a provider whose tool it cannot find: where VirtualBox is not installed, a stub
  `VBoxManage` that only answers `--version` is put on PATH (nothing is created;
  `test_validate_catches_a_bad_provider_option` shows the checks bite).
- tests/unit/data/vagrant_dsl.rb loads the Vagrantfile under plain Ruby with a recording stand-in
  for Vagrant's DSL: every machine and setting Vagrant would be given is compared with the resolved file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.machines import vagrantfile as vf
from labctl.machines.vagrant import VagrantProvider, resolve_box
from labctl.model.config import Node, load_lab
from labctl.state import StateDir
from tests.unit.conftest import REPO, base_lab, run_labctl, write_lab

VAGRANT = shutil.which("vagrant")
RUBY = shutil.which("ruby")
needs_vagrant = pytest.mark.skipif(VAGRANT is None, reason="the vagrant binary is not installed (CI installs it)")
needs_ruby = pytest.mark.skipif(RUBY is None, reason="ruby is not installed (vagrant brings it)")
DSL = REPO / "tests" / "unit" / "data" / "vagrant_dsl.rb"

NODE_IMAGE = "labctl/node:debian12-prepared-0123456789ab"
MGMT_NET = "10.150.7.0/24"
HOST_V2 = vf.DockerHost(cgroup_v2=True, sysctls=tuple(vf.DOCKER_SYSCTLS), lib_modules=True)
HOST_V1 = vf.DockerHost(cgroup_v2=False, sysctls=("net.ipv4.ip_forward",), lib_modules=False)

# (lab file in the repository, vagrant provider, libvirt driver, privileged)
SHIPPED = [
    ("examples/container-lab.yml", "docker", None, True),
    ("examples/container-lab.yml", "docker", None, False),
    ("lab.yml", "libvirt", "kvm", None),
    ("lab.yml", "libvirt", "qemu", None),
    ("lab.yml", "virtualbox", None, None),
]
SHIPPED_IDS = [f"{Path(c[0]).stem}-{c[1]}" + (f"-{c[2]}" if c[2] else "") + ("-unprivileged" if c[3] is False else "")
               for c in SHIPPED]

INIT_CASES = [
    # (provider in lab.yml, os, workers, vagrant provider)
    ("docker", "debian12", 1, "docker"),
    ("docker", "debian12", 3, "docker"),
    ("vagrant", "debian12", 1, "virtualbox"),
    ("vagrant", "debian12", 1, "libvirt"),
    ("vagrant", "ubuntu2404", 2, "virtualbox"),
    ("vagrant", "ubuntu2404", 2, "libvirt"),
    ("vagrant", "rocky9", 1, "virtualbox"),
    ("vagrant", "rocky9", 1, "libvirt"),
]


def _shipped(tmp_path: Path, rel: str) -> Path:
    """A copy of a shipped lab file in tmp_path (its state dir, and the resolved file, land there)."""
    lab = tmp_path / "lab.yml"
    shutil.copy(REPO / rel, lab)
    return lab


def _init_lab(tmp_path: Path, provider: str, os_name: str, workers: int) -> Path:
    lab = tmp_path / "lab.yml"
    res = run_labctl("init", "--provider", provider, "--workers", str(workers), "--name", "vf-test",
                     "--cidr", "192.168.77.0/24", "--lab", str(lab), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    if os_name != "debian12":
        data = yaml.safe_load(lab.read_text())
        data["os"] = os_name
        lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def _resolve(lab_file: Path, provider: str, driver: str | None = "kvm", privileged: bool | None = True,
             host: vf.DockerHost = HOST_V2) -> dict[str, Any]:
    """The resolver's file for this lab, with fixed decisions where labctl would probe the host."""
    lab = load_lab(lab_file)
    if provider == "docker":
        return vf.resolve(lab, lab_file, "docker", node_image=NODE_IMAGE, privileged=bool(privileged),
                          docker_host=host)
    libvirt = provider == "libvirt"
    return vf.resolve(lab, lab_file, provider, box=resolve_box(lab, lab_file, provider),
                      libvirt_driver=(driver or "kvm") if libvirt else None,
                      management_network=MGMT_NET if libvirt else None)


def _env(tmp_path: Path, lab_file: Path, data: dict[str, Any]) -> dict[str, str]:
    """Vagrant's environment as labctl makes it (the resolved file written into the lab's state dir)."""
    env = vf.vagrant_env(StateDir(lab_file, data["lab"]["name"]), data)
    env["VAGRANT_DEFAULT_PROVIDER"] = data["provider"]
    if data["provider"] == "virtualbox" and shutil.which("VBoxManage") is None:
        stub = tmp_path / "stub-bin"
        stub.mkdir(exist_ok=True)
        (stub / "VBoxManage").write_text("#!/bin/sh\necho 7.0.14r161095\n")
        (stub / "VBoxManage").chmod(0o755)
        env["PATH"] = f"{stub}:{env['PATH']}"
    return env


def _vagrant(args: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VAGRANT or "vagrant", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def _dsl(tmp_path: Path, config: Path | None, vagrantfile: Path = REPO / "Vagrantfile") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != vf.ENV}
    if config is not None:
        env[vf.ENV] = str(config)
    return subprocess.run([RUBY or "ruby", str(DSL), str(vagrantfile)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


# -- vagrant validate ------------------------------------------------------------------------------------------


@needs_vagrant
@pytest.mark.parametrize(("rel", "provider", "driver", "privileged"), SHIPPED, ids=SHIPPED_IDS)
def test_vagrant_validate_shipped_labs(tmp_path: Path, rel: str, provider: str, driver: str | None,
                                       privileged: bool | None) -> None:
    lab = _shipped(tmp_path, rel)
    res = _vagrant(["validate"], tmp_path, _env(tmp_path, lab, _resolve(lab, provider, driver, privileged)))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "validated successfully" in res.stdout


@needs_vagrant
@pytest.mark.parametrize(("provider", "os_name", "workers", "vm_provider"), INIT_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}w-{c[3]}" for c in INIT_CASES])
def test_vagrant_validate(tmp_path: Path, provider: str, os_name: str, workers: int, vm_provider: str) -> None:
    lab = _init_lab(tmp_path, provider, os_name, workers)
    res = _vagrant(["validate"], tmp_path, _env(tmp_path, lab, _resolve(lab, vm_provider)))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "validated successfully" in res.stdout


@needs_vagrant
def test_validate_catches_a_bad_provider_option(tmp_path: Path) -> None:
    """The validation above is real: an unknown docker provider option fails it."""
    lab = _shipped(tmp_path, "examples/container-lab.yml")
    bad = tmp_path / "Vagrantfile"
    bad.write_text((REPO / "Vagrantfile").read_text().replace("d.has_ssh = false", "d.has_ssh = false; d.no_such_option = 1"))
    env = _env(tmp_path, lab, _resolve(lab, "docker")) | {"VAGRANT_VAGRANTFILE": str(bad)}
    res = _vagrant(["validate"], tmp_path, env)
    assert res.returncode != 0
    assert "no_such_option" in res.stdout + res.stderr


@needs_vagrant
def test_vagrant_without_labctl_says_run_labctl_up(tmp_path: Path) -> None:
    """`vagrant` run by hand, without the resolved file: Vagrant stops, telling to run `labctl up`."""
    env = {k: v for k, v in os.environ.items() if k != vf.ENV} | {
        "VAGRANT_VAGRANTFILE": str(REPO / "Vagrantfile"), "VAGRANT_DOTFILE_PATH": str(tmp_path / ".vagrant"),
        "VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_NO_COLOR": "1"}
    res = _vagrant(["validate"], tmp_path, env)
    assert res.returncode != 0
    assert f"{vf.ENV} is not set" in res.stderr and "labctl up" in res.stderr, res.stdout + res.stderr
    res = _vagrant(["validate"], tmp_path, env | {vf.ENV: str(tmp_path / "nope.json")})
    assert res.returncode != 0
    assert "nope.json: no such file" in res.stderr and "labctl up" in res.stderr, res.stdout + res.stderr


@needs_vagrant
def test_vagrant_box_commands_need_no_lab(tmp_path: Path) -> None:
    """Vagrant loads the Vagrantfile for every command in its directory: `vagrant box list` (and labctl's
    own `vagrant box add`) there must not stop for want of a lab."""
    env = {k: v for k, v in os.environ.items() if k != vf.ENV} | {
        "VAGRANT_VAGRANTFILE": str(REPO / "Vagrantfile"), "VAGRANT_DOTFILE_PATH": str(tmp_path / ".vagrant"),
        "VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_NO_COLOR": "1"}
    res = _vagrant(["box", "list"], tmp_path, env)
    assert res.returncode == 0, res.stdout + res.stderr


# -- what Vagrant is given (the Vagrantfile under a recording DSL) ------------------------------------------------


@needs_ruby
@pytest.mark.parametrize(("rel", "provider", "driver", "privileged"), SHIPPED, ids=SHIPPED_IDS)
def test_every_setting_comes_from_the_resolved_file(tmp_path: Path, rel: str, provider: str, driver: str | None,
                                                    privileged: bool | None) -> None:
    lab = _shipped(tmp_path, rel)
    data = _resolve(lab, provider, driver, privileged, host=HOST_V1 if privileged is False else HOST_V2)
    env = _env(tmp_path, lab, data)
    res = _dsl(tmp_path, Path(env[vf.ENV]))
    assert res.returncode == 0, res.stdout + res.stderr
    got = json.loads(res.stdout)["vm"]
    assert got["synced_folder()"] == [[".", "/vagrant", {"disabled": True}]]
    machines = [k.split(":", 1)[1] for k in got if k.startswith("define:")]
    assert machines == [n.name for n in load_lab(lab).nodes], "exactly the nodes of lab.yml, in order"
    for node in data["nodes"]:
        (m,) = got[f"define:{node['name']}"]
        vm = m["vm"]
        assert vm["hostname"] == node["name"]
        assert vm["network()"] == [["private_network", {"ip": node["ip"], "netmask": node["netmask"], "id": "lab"}]]
        assert [k for k in vm if k.startswith("provider:")] == [f"provider:{provider}"]
        settings, override = vm[f"provider:{provider}"]
        if provider == "docker":
            assert settings == {"image": NODE_IMAGE, "name": node["machine_name"], "has_ssh": False,
                                "remains_running": True, "stop_timeout": 10, "volumes": data["docker"]["volumes"],
                                "create_args": node["docker_create_args"]}
            assert override["vm"]["network()"] == [["private_network", {"ip": node["ip"], "id": "lab",
                                                                         "name": data["network"]["name"]}]]
            continue
        box = data["box"]
        assert override["vm"]["box"] == box["name"]
        assert override["vm"].get("box_version") == box["version"]
        assert override["vm"].get("box_url") == box["url"]
        if provider == "virtualbox":
            assert settings == {"name": node["machine_name"], "cpus": node["cpus"], "memory": node["memory_mb"],
                                "linked_clone": True}
            continue
        lv = data["libvirt"]
        expected = {"default_prefix": lv["domain_prefix"], "cpus": node["cpus"], "memory": node["memory_mb"],
                    "driver": driver, "management_network_name": lv["management_network"]["name"],
                    "management_network_address": MGMT_NET}
        if driver == "qemu":
            expected |= {"cpu_mode": "maximum", "disk_driver()": [[{"cache": "unsafe"}]]}
        assert settings == expected
        assert override["vm"]["network()"] == [["private_network", {
            "ip": node["ip"], "netmask": node["netmask"], "id": "lab", "libvirt__network_name": data["network"]["name"],
            "libvirt__forward_mode": "none", "libvirt__dhcp_enabled": False}]]


@needs_ruby
@pytest.mark.parametrize(("provider", "drop"), [
    ("libvirt", ("nodes", 1, "cpus")),
    ("libvirt", ("libvirt", "driver")),
    ("libvirt", ("libvirt", "management_network", "address")),
    ("virtualbox", ("box", "version")),
    ("docker", ("docker", "image")),
    ("docker", ("nodes", 0, "docker_create_args")),
    ("docker", ("network",)),
])
def test_a_missing_key_is_an_error_naming_it(tmp_path: Path, provider: str, drop: tuple[Any, ...]) -> None:
    """No defaults in the Vagrantfile: a key the resolved file lacks stops it, naming the file and the key."""
    lab = _shipped(tmp_path, "examples/container-lab.yml" if provider == "docker" else "lab.yml")
    data = _resolve(lab, provider)
    parent: Any = data
    for key in drop[:-1]:
        parent = parent[key]
    del parent[drop[-1]]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    res = _dsl(tmp_path, broken)
    assert res.returncode != 0
    where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in drop).lstrip(".")
    assert f"{broken}: {where} is missing" in res.stderr, res.stderr
    assert "labctl up" in res.stderr


@needs_ruby
def test_without_the_resolved_file_it_names_the_ones_it_finds(tmp_path: Path) -> None:
    lab = _shipped(tmp_path, "examples/container-lab.yml")
    target = Path(_env(tmp_path, lab, _resolve(lab, "docker"))[vf.ENV])
    res = _dsl(tmp_path, None)
    assert res.returncode != 0
    assert f"{vf.ENV} is not set" in res.stderr and "labctl up" in res.stderr
    assert f"{vf.ENV}={target} VAGRANT_DOTFILE_PATH={target.parent / 'vagrant'}" in res.stderr


def test_the_vagrantfile_reads_no_lab_yml_and_has_no_defaults() -> None:
    text = (REPO / "Vagrantfile").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "yaml" not in code.lower()
    assert "ENV.fetch" not in code and code.count("ENV[") == 1 and "ENV[CONFIG_ENV]" in code
    assert ".fetch(key)" in code and code.count(".fetch(") == 1, "only need() reads the file, without a default"
    assert "File.exist" not in code and "File.directory" not in code, "host facts are resolved by labctl"


# -- the resolver -------------------------------------------------------------------------------------------------


def test_the_resolved_file_carries_the_models_defaults(tmp_path: Path) -> None:
    """One owner: a node without cpus/memory_mb gets config.Node's defaults, through the resolved file."""
    lab = base_lab()
    lab["provider"] = "vagrant"
    for n in lab["nodes"]:
        n.pop("cpus")
        n.pop("memory_mb")
    lab_file = write_lab(tmp_path, lab)
    for provider in ("virtualbox", "libvirt", "docker"):
        data = _resolve(lab_file, provider)
        assert {n["cpus"] for n in data["nodes"]} == {Node.model_fields["cpus"].default}
        assert {n["memory_mb"] for n in data["nodes"]} == {Node.model_fields["memory_mb"].default}
        assert {n["netmask"] for n in data["nodes"]} == {"255.255.255.0"}


def test_docker_run_flags_follow_the_host_and_privileged(tmp_path: Path) -> None:
    lab_file = _shipped(tmp_path, "examples/container-lab.yml")
    priv = _resolve(lab_file, "docker", privileged=True, host=HOST_V2)
    args = priv["nodes"][0]["docker_create_args"]
    assert args[:1] == ["--cgroupns=private"] and "--privileged=true" in args and "--cap-add" not in args
    assert args.count("--sysctl") == len(vf.DOCKER_SYSCTLS)
    assert ["--label", "labctl.node=master", "--label", f"labctl.lab_file={lab_file.resolve()}"] == args[-4:]
    assert "/lib/modules:/lib/modules:ro" in priv["docker"]["volumes"]
    state = StateDir(lab_file, "k8s-ctr")
    assert f"{state.ssh_dir}/authorized_keys:/etc/labctl/authorized_keys:ro" in priv["docker"]["volumes"]
    plain = _resolve(lab_file, "docker", privileged=False, host=HOST_V1)
    args = plain["nodes"][0]["docker_create_args"]
    assert "--privileged=false" in args and "SYS_ADMIN" in args and "--cgroupns=host" in args
    assert args.count("--sysctl") == 1
    assert "/lib/modules:/lib/modules:ro" not in plain["docker"]["volumes"]


def test_docker_host_probe_reads_the_host(tmp_path: Path) -> None:
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/cgroup.controllers").write_text("cpu memory\n")
    (tmp_path / "proc/sys/net/ipv4").mkdir(parents=True)
    (tmp_path / "proc/sys/net/ipv4/ip_forward").write_text("1\n")
    assert vf.DockerHost.probe(tmp_path) == vf.DockerHost(True, ("net.ipv4.ip_forward",), False)
    (tmp_path / "lib/modules").mkdir(parents=True)
    assert vf.DockerHost.probe(tmp_path).lib_modules


def test_a_local_box_file_becomes_a_url(tmp_path: Path) -> None:
    (tmp_path / "boxes").mkdir()
    (tmp_path / "boxes" / "Debian 12.box").write_bytes(b"")
    lab = base_lab() | {"provider": "vagrant", "box": {"name": "./boxes/Debian 12.box", "version": "1.2.3"}}
    data = _resolve(write_lab(tmp_path, lab), "virtualbox")
    # the name is made from the URL's last part, %20 included (as before the resolved file)
    assert data["box"] == {"name": "k8s-lab/debian-2012", "version": "1.2.3",
                           "url": (tmp_path / "boxes" / "Debian 12.box").resolve().as_uri()}


def test_written_only_when_it_changes(tmp_path: Path) -> None:
    lab_file = _shipped(tmp_path, "lab.yml")
    target = tmp_path / "vagrant.json"
    data = _resolve(lab_file, "libvirt")
    assert vf.write(target, data) is True
    before = target.stat().st_mtime_ns
    assert vf.write(target, json.loads(json.dumps(data))) is False
    assert target.stat().st_mtime_ns == before
    assert vf.write(target, _resolve(lab_file, "libvirt", driver="qemu")) is True
    assert json.loads(target.read_text())["libvirt"]["driver"] == "qemu"


def test_the_vagrant_provider_writes_the_file_before_calling_vagrant(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """VagrantProvider._env (every vagrant call goes through it) writes the file and points Vagrant at it;
    without LABCTL_LIBVIRT_DRIVER a later call keeps the driver `up` decided."""
    import labctl.machines.vagrant as vagrant

    monkeypatch.setattr(vagrant, "management_network", lambda lab: MGMT_NET)
    monkeypatch.setenv("LABCTL_LIBVIRT_DRIVER", "qemu")
    lab_file = _shipped(tmp_path, "lab.yml")
    lab = load_lab(lab_file)
    env = VagrantProvider(lab, lab_file, "libvirt")._env()
    target = Path(env[vf.ENV])
    assert target == StateDir(lab_file, lab.name).vagrant_config and target.is_file()
    assert env["VAGRANT_DEFAULT_PROVIDER"] == "libvirt"
    assert env["VAGRANT_VAGRANTFILE"] == str(REPO / "Vagrantfile")
    written = json.loads(target.read_text())
    assert written == _resolve(lab_file, "libvirt", driver="qemu")
    monkeypatch.delenv("LABCTL_LIBVIRT_DRIVER")
    VagrantProvider(lab, lab_file, "libvirt")._env()
    assert json.loads(target.read_text())["libvirt"]["driver"] == "qemu"
