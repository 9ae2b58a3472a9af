"""The machines: how a lab's nodes come to exist and how they are reached. They return data; commands print.

Machine providers (this module holds their interface and `get_provider`):
- docker:   systemd containers through Vagrant's docker provider (the container lab; docker.py, image.py)
- vagrant:  VirtualBox or libvirt VMs through Vagrant (vagrant.py, box.py; vagrantfile.py writes
            what the Vagrantfile reads)
- existing: real machines reached over SSH (checked, never created; existing.py)

Every provider answers `up()`, `down()` and `status()`; how to reach a node is reach.py's (host, port,
user, key, known_hosts, ControlPath), the lab's SSH key and known_hosts are sshkeys.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from labctl.model.config import Lab

Progress = Callable[[str], None]


@dataclass
class NodeStatus:
    name: str
    role: str
    ip: str
    state: str  # running | degraded | stopped | not created | unreachable | starting ...
    detail: str = ""  # failed units, cause of a failure


class Provider(Protocol):
    def up(self, progress: Progress) -> list[NodeStatus]: ...

    def down(self, progress: Progress) -> None: ...

    def status(self) -> list[NodeStatus]: ...


def get_provider(lab: Lab, lab_file: Path, *, rebuild_image: bool = False, vm_provider: str | None = None,
                 node_image: str = "prepared") -> Provider:
    if lab.provider == "docker":
        from labctl.machines.docker import DockerProvider

        return DockerProvider(lab, lab_file, rebuild_image=rebuild_image, node_image=node_image)
    if lab.provider == "vagrant":
        from labctl.machines.vagrant import VagrantProvider

        return VagrantProvider(lab, lab_file, vm_provider=vm_provider)
    from labctl.machines.existing import ExistingProvider

    return ExistingProvider(lab, lab_file)
