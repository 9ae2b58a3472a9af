"""The lab's derived facts: computed once in Python from the validated lab.yml, read by everyone.

`LabFacts.from_lab(lab)` derives every fact below from a validated `labctl.model.config.Lab`;
`inventory.group_vars_document` writes them into the generated group_vars/all.yml
(`as_group_vars()`), where the roles consume them as they are -- no role derives one again
in Jinja -- and `LabFacts.from_group_vars(vars)` reads them back for the readers that only
have the inventory (labctl verify, its hints, the workload manifests, the tests/infra suites).

The facts (group_vars key -> what it is -> who reads it):
- `registry` (`lab_registry`: enabled, name, ip, port, address, auth, user): the lab registry
  node and how it is reached (`address` = '<node name>:<port>', "" without a registry node).
  Roles registry, containerd, docker, image_mirror, firewall; hints; the registry/runtime suites.
- `mirror` (`lab_mirror`): `enabled` = kubernetes.mirror_images AND the lab has a registry node,
  and the repository each image family is pulled from: kubeadm's imageRepository ("" = kubeadm's
  own), containerd's sandbox (pause) image repository, flannel's registry, the addon charts'
  image registry ("" = the charts' own), and `pull_credentials` (the images come from a registry
  that wants a login). Roles containerd, kubeadm_init, kubeadm_join, flannel, ingress, dashboard,
  metrics_server, monitoring; playbooks/images.yml; `labctl images --push`; the runtime suite.
- `images` (`lab_images`: [{source, mirror, group}]): every image the lab pulls and its name in the
  lab registry ("" when not mirroring), computed by labctl.model.images. Roles image_mirror, kubeadm_init;
  `labctl images`; the network suite.
- `addons` (`lab_addons_enabled`: {role: addon}): the addon charts lab.yml turns on, in the order
  the addons phase installs them (metrics_server, ingress, dashboard, monitoring). playbooks/addons.yml,
  labctl check (config.py), labctl.model.addon_images, labctl verify's plan.
- `versions` (`lab_kubernetes_minor`, `lab_kubernetes_version` = the exact patch release,
  `lab_pause_version`, `lab_coredns_version`, `lab_etcd_version`, `lab_containerd_series`,
  `lab_addon_versions`): the pins of labctl/model/pins.yml (labctl.model.versions) for this lab.
  Roles kubernetes_packages, kubeadm_init, containerd and the addon roles; labctl.model.images; labctl check.
- `nfs` (`lab_nfs`: enabled, server, ip, path, clients): the NFS export on the registry node.
  Role nfs; the storage and workloads suites; the workload manifests; hints.
- `csr_approver` (`lab_csr_approver_image`, `lab_csr_approver_unavailable`): the in-cluster
  kubelet serving CSR approver's image as the nodes pull it, and why the lab cannot run it ("" = it can).
  Role csr_approver; the control-plane suite.

Frozen dataclasses, not pydantic: the input is the already validated Lab, and the readers
of group_vars (the testinfra suites, the hints) stay free of pydantic's import; from_group_vars
tolerates missing keys (an inventory of an older labctl, or none at all while the suites collect).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from labctl.model import versions

if TYPE_CHECKING:
    from labctl.model.config import Kubernetes, Lab

UPSTREAM_K8S = "registry.k8s.io"  # kubeadm's own image repository (and the pause image's)
UPSTREAM_FLANNEL = "ghcr.io"  # where flannel's images come from
NFS_EXPORT = "/srv/nfs/labctl"  # the directory the nfs role exports on the registry node
DEFAULT_REGISTRY_PORT = 5000


def _build(cls: type, data: Any) -> Any:
    """A fact dataclass from its group_vars mapping: the keys it knows, defaults for the missing ones."""
    data = data if isinstance(data, dict) else {}
    return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class Registry:
    enabled: bool = False  # the lab has a registry node
    name: str = ""  # its node name ("" without one)
    ip: str = ""  # its node IP
    port: int = DEFAULT_REGISTRY_PORT  # registry.port
    address: str = ""  # '<name>:<port>', how every node names it ("" without one)
    auth: bool = False  # registry.auth: htpasswd with a generated password
    user: str = ""  # registry.user


@dataclass(frozen=True)
class Mirror:
    enabled: bool = False  # kubernetes.mirror_images and a registry node: every image from the lab registry
    kubeadm_image_repository: str = ""  # kubeadm's imageRepository ("" = kubeadm's default)
    sandbox_image_repository: str = UPSTREAM_K8S  # where containerd's sandbox (pause) image comes from
    flannel_registry: str = UPSTREAM_FLANNEL  # where flannel's images come from
    addons_registry: str = ""  # the addon charts' image registry ("" = each chart's own)
    pull_credentials: bool = False  # the images come from a registry that wants a login


@dataclass(frozen=True)
class Image:
    source: str = ""  # upstream reference, e.g. registry.k8s.io/pause:3.10.1
    mirror: str = ""  # name in the lab registry ("" when the lab does not mirror)
    group: str = ""  # kubeadm | cni | addons | network | workloads


@dataclass(frozen=True)
class Versions:
    kubernetes_minor: str = ""  # "1.37"
    kubernetes: str = ""  # the exact release: kubernetes.version if it has a patch, else the pinned patch
    pause: str = ""  # the sandbox image tag kubeadm of that release expects
    coredns: str = ""
    etcd: str = ""
    containerd_series: str = ""  # "2.3"
    addons: dict[str, str] = field(default_factory=dict)  # every pinned addon -> its chart/manifest version


@dataclass(frozen=True)
class Nfs:
    enabled: bool = False  # the lab has a registry node, which exports the directory
    server: str = ""  # the registry node's name
    ip: str = ""  # its IP, what the PersistentVolumes mount from
    path: str = NFS_EXPORT
    clients: str = ""  # who may mount it: the node network


@dataclass(frozen=True)
class CsrApprover:
    image: str = ""  # as the nodes pull it (its lab registry name when mirroring)
    unavailable: str = ""  # why the lab cannot run it ("" = it can)


# Versions' fields as flat group_vars keys (the roles read these names)
_VERSION_KEYS = {"kubernetes_minor": "lab_kubernetes_minor", "kubernetes": "lab_kubernetes_version",
                 "pause": "lab_pause_version", "coredns": "lab_coredns_version", "etcd": "lab_etcd_version",
                 "containerd_series": "lab_containerd_series", "addons": "lab_addon_versions"}
_CSR_KEYS = {"image": "lab_csr_approver_image", "unavailable": "lab_csr_approver_unavailable"}


def kubernetes_patch(k8s: Kubernetes, unknown: str | None = None) -> str:
    """The exact Kubernetes release of a lab: its version when it names a patch, else the minor's pinned
    patch (labctl/model/pins.yml); for a minor labctl does not know, `unknown` (default: the version as written)."""
    if k8s.version.count(".") == 2:
        return k8s.version
    rel = versions.KUBERNETES.get(k8s.minor)
    return rel.patch if rel else (k8s.version if unknown is None else unknown)


def registry(lab: Lab) -> Registry:
    reg = lab.registry_node
    if reg is None:
        return Registry(port=lab.registry.port, auth=lab.registry.auth, user=lab.registry.user)
    return Registry(True, reg.name, str(reg.ip), lab.registry.port, f"{reg.name}:{lab.registry.port}",
                    lab.registry.auth, lab.registry.user)


def mirror(lab: Lab) -> Mirror:
    reg = registry(lab)
    if not (lab.kubernetes.mirror_images and reg.enabled):
        return Mirror()
    return Mirror(True, reg.address, reg.address, reg.address, reg.address, reg.auth)


def mirror_registry(lab: Lab) -> str:
    """The lab registry's address when the lab mirrors its images, else ""."""
    m = mirror(lab)
    return m.addons_registry if m.enabled else ""


def enabled_addons(lab: Lab) -> dict[str, str]:
    """role -> addon of every chart lab.yml turns on, in the order the addons phase installs them."""
    a = lab.addons
    chosen = {"metrics_server": "metrics-server" if a.metrics_server else "none", "ingress": a.ingress,
              "dashboard": a.dashboard, "monitoring": a.monitoring}
    return {role: addon for role, addon in chosen.items() if addon != "none"}


def lab_versions(lab: Lab) -> Versions:
    k8s = lab.kubernetes
    rel = versions.KUBERNETES.get(k8s.minor)
    return Versions(k8s.minor, kubernetes_patch(k8s), rel.pause if rel else "", rel.coredns if rel else "",
                    rel.etcd if rel else "", versions.CONTAINERD_SERIES,
                    {name: a.version for name, a in versions.ADDONS.items()})


def nfs(lab: Lab) -> Nfs:
    reg = lab.registry_node
    clients = str(lab.network.cidr)
    return Nfs(True, reg.name, str(reg.ip), NFS_EXPORT, clients) if reg else Nfs(clients=clients)


@dataclass(frozen=True)
class LabFacts:
    registry: Registry = field(default_factory=Registry)
    mirror: Mirror = field(default_factory=Mirror)
    images: tuple[Image, ...] = ()
    addons: dict[str, str] = field(default_factory=dict)
    versions: Versions = field(default_factory=Versions)
    nfs: Nfs = field(default_factory=Nfs)
    csr_approver: CsrApprover = field(default_factory=CsrApprover)

    @classmethod
    def from_lab(cls, lab: Lab) -> LabFacts:
        from labctl.model import images  # images names the images with mirror_registry() above

        return cls(registry(lab), mirror(lab), tuple(images.lab_images(lab)), enabled_addons(lab),
                   lab_versions(lab), nfs(lab),
                   CsrApprover(images.csr_approver_image(lab), images.csr_approver_unavailable(lab)))

    def as_group_vars(self) -> dict[str, Any]:
        """The facts as the lab_* variables of group_vars/all.yml (plain YAML data)."""
        gv: dict[str, Any] = {key: getattr(self.versions, name) for name, key in _VERSION_KEYS.items()}
        gv["lab_registry"] = asdict(self.registry)
        gv["lab_mirror"] = asdict(self.mirror)
        gv["lab_images"] = [asdict(i) for i in self.images]
        gv["lab_addons_enabled"] = dict(self.addons)
        gv["lab_nfs"] = asdict(self.nfs)
        gv.update({key: getattr(self.csr_approver, name) for name, key in _CSR_KEYS.items()})
        return gv

    @classmethod
    def from_group_vars(cls, gv: dict[str, Any] | None) -> LabFacts:
        """The facts from a generated group_vars/all.yml (as loaded); what is missing gets its default."""
        gv = gv or {}
        return cls(
            _build(Registry, gv.get("lab_registry")),
            _build(Mirror, gv.get("lab_mirror")),
            tuple(_build(Image, i) for i in gv.get("lab_images") or ()),
            dict(gv.get("lab_addons_enabled") or {}),
            _build(Versions, {name: gv[key] for name, key in _VERSION_KEYS.items() if key in gv}),
            _build(Nfs, gv.get("lab_nfs")),
            _build(CsrApprover, {name: gv[key] for name, key in _CSR_KEYS.items() if key in gv}),
        )
