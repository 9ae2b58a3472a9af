"""What the Vagrantfile reads: one resolved file per lab, `.labctl/<name>/vagrant.json`.

Every fact the repository's Vagrantfile needs is computed here, in Python, from the validated Lab
(its pydantic defaults included: a node without `cpus` gets Node's default, nowhere else) and from
the decisions the providers make before calling Vagrant (the box, the libvirt driver and management
network in machines/vagrant.py; the node image and --privileged in machines/docker.py).
The providers write the file before every vagrant call (`write`, only when its content changes)
and pass its path as LABCTL_VAGRANT_CONFIG (`vagrant_env`). The Vagrantfile maps it onto Vagrant's
DSL: it parses no lab.yml and has no defaults of its own; a missing key is an error naming the key.

Layout (SCHEMA 1; `provider` says which of box/libvirt/docker is present):

    schema, about
    lab          {name, file, state_dir}
    provider     docker | virtualbox | libvirt
    network      {name, cidr, netmask}                         the lab network
    nodes        [{name, role, ip, netmask, cpus, memory_mb, machine_name,
                   docker_create_args (provider docker)}]
    box          {name, version, url}                          virtualbox, libvirt (version/url may be null)
    libvirt      {driver, cpu_mode, cpu_model, disk_cache,     cpu_mode/cpu_model null: vagrant-libvirt's
                  domain_prefix,                               own (host-model); disk_cache
                  management_network: {name, address}}         null: libvirt's own
    docker       {image, privileged, volumes}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.machines import common
from labctl.model.config import Lab, Node
from labctl.state import StateDir

SCHEMA = 1
ENV = "LABCTL_VAGRANT_CONFIG"
VM_PROVIDERS = ("virtualbox", "libvirt")
LIBVIRT_DRIVERS = ("kvm", "qemu")
# software emulation (TCG) has no host-passthrough: libvirt's "maximum" mode (QEMU's `-cpu max`), every
# feature TCG emulates (x86-64-v2 and more, which some images need). Not a named Intel model: the guest
# kernel turns on page-table isolation (PTI) for an Intel CPU that does not say it is immune to Meltdown,
# and TCG cannot say so (no IA32_ARCH_CAPABILITIES); under TCG each PTI switch flushes QEMU's software
# TLB. Measured with the box's kernel under TCG: a system call 10.6 us as Nehalem, 0.63 us as max; a pipe
# round trip between two processes 67 us and 7 us. An emulated CPU does not speculate: no Meltdown to isolate.
QEMU_CPU = ("maximum", None)
# software emulation (TCG): the lab disks ignore the guests' flushes. Each flush cost ~24 ms in an emulated
# VM (dd oflag=dsync), etcd flushes its WAL and database on every write (fsync ~110 ms, commit ~180 ms on
# average in the first real cluster) and the API server timed out on it. A lab VM is disposable: after a
# host crash it is recreated (`labctl down`/`up`), never repaired. KVM labs keep libvirt's default.
QEMU_DISK_CACHE = "unsafe"
# The sysctls Kubernetes needs, set when a container is created: /proc/sys is read-only inside it.
DOCKER_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.forwarding": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
}


# -- names -------------------------------------------------------------------------------------------


def lab_network_name(lab: Lab) -> str:
    """The lab network: the docker network labctl creates, or the libvirt network vagrant-libvirt makes."""
    return f"{lab.name}-net"


def management_network_name(lab: Lab) -> str:
    """libvirt: Vagrant's own management network (NAT, DHCP), one per lab."""
    return f"{lab.name}-mgmt"


def machine_name(lab: Lab, node: Node) -> str:
    """The node's container (docker) or VirtualBox VM name; libvirt's domain is the same (prefix + node)."""
    return f"{lab.name}-{node.name}"


# -- the host the containers run on --------------------------------------------------------------------


@dataclass(frozen=True)
class DockerHost:
    """What the container lab's run flags depend on, read from this host (where Docker runs them)."""

    cgroup_v2: bool
    sysctls: tuple[str, ...]  # the DOCKER_SYSCTLS this kernel has (net.bridge.* only with br_netfilter)
    lib_modules: bool  # /lib/modules exists: mounted read-only for modprobe and kubeadm's preflight

    @classmethod
    def probe(cls, root: Path = Path("/")) -> DockerHost:
        return cls(
            cgroup_v2=(root / "sys/fs/cgroup/cgroup.controllers").exists(),
            sysctls=tuple(k for k in DOCKER_SYSCTLS if (root / "proc/sys" / k.replace(".", "/")).exists()),
            lib_modules=(root / "lib/modules").is_dir(),
        )


def docker_volumes(state: StateDir, host: DockerHost) -> list[str]:
    # anonymous volumes: nested overlayfs needs them; `docker rm -v` removes them with the node
    out = ["/var/lib/containerd", "/var/lib/docker", f"{state.ssh_dir}/authorized_keys:/etc/labctl/authorized_keys:ro"]
    if host.lib_modules:
        # the host kernel's modules, read-only: modprobe and kubeadm's preflight look there
        out.append("/lib/modules:/lib/modules:ro")
    return out


def docker_create_args(lab: Lab, lab_file: Path, node: Node, privileged: bool, host: DockerHost) -> list[str]:
    """`docker create` flags of one node (the labels are what machines/docker.py finds its containers by)."""
    if privileged:
        # where the engine allows it (the Kubernetes phases need it)
        security = ["--cgroupns=private"] if host.cgroup_v2 else \
            ["--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]
    else:
        # engines that refuse --privileged: what systemd and the lab need
        security = ["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "SYS_PTRACE",
                    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
                    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]
    sysctls = [a for k in host.sysctls for a in ("--sysctl", f"{k}={DOCKER_SYSCTLS[k]}")]
    return [
        *security, *sysctls,
        f"--privileged={'true' if privileged else 'false'}",
        "--stop-signal", "SIGRTMIN+3",
        # a console (/dev/console), which the image links as /dev/kmsg where there is none (kubelet reads it)
        "--tty",
        "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
        "--label", f"labctl.lab={lab.name}", "--label", f"labctl.node={node.name}",
        "--label", f"labctl.lab_file={lab_file.resolve()}",
    ]


# -- the file ----------------------------------------------------------------------------------------------


def resolve(lab: Lab, lab_file: Path, provider: str, *,
            box: dict[str, str | None] | None = None,
            libvirt_driver: str | None = None, management_network: str | None = None,
            node_image: str | None = None, privileged: bool | None = None,
            docker_host: DockerHost | None = None) -> dict[str, Any]:
    """Everything the Vagrantfile reads, for one Vagrant provider (docker | virtualbox | libvirt).

    The inputs after `provider` are the providers' decisions: `box` ({name, version, url}) for the VMs,
    `libvirt_driver` (kvm | qemu) and `management_network` (a CIDR) for libvirt, `node_image` and
    `privileged` for docker (`docker_host`: DockerHost.probe() when not given).
    """
    state = StateDir(lab_file, lab.name)
    netmask = str(lab.network.cidr.netmask)
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "about": f"written by labctl (labctl/machines/vagrantfile.py) from {lab_file.resolve()} before every "
                 "vagrant call; read by the Vagrantfile; edits are overwritten",
        "lab": {"name": lab.name, "file": str(lab_file.resolve()), "state_dir": str(state.root)},
        "provider": provider,
        "network": {"name": lab_network_name(lab), "cidr": str(lab.network.cidr), "netmask": netmask},
        "nodes": [],
    }
    host = (docker_host or DockerHost.probe()) if provider == "docker" else None
    if provider == "docker":
        if node_image is None or privileged is None:
            raise ValueError("provider docker: node_image and privileged are required")
        assert host is not None
        out["docker"] = {"image": node_image, "privileged": privileged, "volumes": docker_volumes(state, host)}
    elif provider in VM_PROVIDERS:
        if box is None or not box.get("name"):
            raise ValueError(f"provider {provider}: a box is required")
        out["box"] = {"name": box["name"], "version": box.get("version"), "url": box.get("url")}
        if provider == "libvirt":
            if libvirt_driver not in LIBVIRT_DRIVERS or not management_network:
                raise ValueError("provider libvirt: libvirt_driver (kvm | qemu) and management_network are required")
            emulated = libvirt_driver == "qemu"
            cpu_mode, cpu_model = QEMU_CPU if emulated else (None, None)
            out["libvirt"] = {
                "driver": libvirt_driver, "cpu_mode": cpu_mode, "cpu_model": cpu_model,
                "disk_cache": QEMU_DISK_CACHE if emulated else None,
                "domain_prefix": f"{lab.name}-",
                "management_network": {"name": management_network_name(lab), "address": management_network},
            }
    else:
        raise ValueError(f"provider: found {provider!r}; allowed: docker, virtualbox, libvirt")
    for n in lab.nodes:
        node: dict[str, Any] = {"name": n.name, "role": n.role, "ip": str(n.ip), "netmask": netmask,
                                "cpus": n.cpus, "memory_mb": n.memory_mb, "machine_name": machine_name(lab, n)}
        if host is not None:
            node["docker_create_args"] = docker_create_args(lab, lab_file, n, bool(privileged), host)
        out["nodes"].append(node)
    return out


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"


def write(target: Path, data: dict[str, Any]) -> bool:
    """Write the resolved file when its content changed (atomically); True when written."""
    text = dumps(data)
    try:
        if target.read_text() == text:
            return False
    except OSError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
    return True


def vagrant_env(state: StateDir, data: dict[str, Any]) -> dict[str, str]:
    """Write the resolved file for `data` and return Vagrant's environment pointing at it."""
    state.ensure()
    write(state.vagrant_config, data)
    return common.vagrant_env(state, {ENV: str(state.vagrant_config)})
