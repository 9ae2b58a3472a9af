"""lab.yml: load, validate, cross-check. Returns data; never prints.

`load_lab(path)` returns a `Lab` or raises `LabError` holding every problem
found, each with the field path (`nodes[1].ip`), the value found and what is
allowed. `cross_check(lab)` returns the semantic findings (errors and
warnings) that a schema alone cannot express.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from labctl import versions
from labctl.errors import UserError

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
VERSION_RE = re.compile(r"^1\.\d{1,2}(\.\d{1,3})?$")

Provider = Literal["vagrant", "docker", "existing"]
OsName = Literal["debian12", "ubuntu2404", "rocky9"]
Role = Literal["control-plane", "worker", "registry"]

# Which operating systems each provider can bring up.
PROVIDER_OS: dict[str, tuple[str, ...]] = {
    "vagrant": ("debian12", "ubuntu2404", "rocky9"),
    "docker": ("debian12",),
    "existing": ("debian12", "ubuntu2404", "rocky9"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Node(_Strict):
    name: str = Field(description="host name, a DNS label")
    role: Role
    ip: ipaddress.IPv4Address = Field(description="address on the node network")
    cpus: int = Field(2, ge=1, le=64)
    memory_mb: int = Field(2048, ge=512, le=262144)
    # provider: existing — how to reach a real machine
    ssh_host: str | None = None
    ssh_user: str | None = None
    ssh_key: str | None = None
    ssh_port: int = Field(22, ge=1, le=65535)

    @field_validator("ip", mode="before")
    @classmethod
    def _ip_from_str(cls, v: Any) -> Any:
        return ipaddress.IPv4Address(v) if isinstance(v, str) else v


class Network(_Strict):
    cidr: ipaddress.IPv4Network = Field(description="the node network")

    @field_validator("cidr", mode="before")
    @classmethod
    def _net_from_str(cls, v: Any) -> Any:
        return ipaddress.IPv4Network(v) if isinstance(v, str) else v


class Kubernetes(_Strict):
    version: str = versions.DEFAULT_KUBERNETES
    pod_subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("10.244.0.0/16")
    service_subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("10.254.0.0/16")
    proxy_mode: Literal["ipvs", "nftables", "iptables"] = "ipvs"
    dns_domain: str = "cluster.local"
    packages_dir: str | None = None  # offline .deb/.rpm directory on the controller
    bundle: str | None = None  # offline bundle directory on the controller (`labctl bundle build`)
    mirror_images: bool = True  # pull every image from the lab registry

    @field_validator("pod_subnet", "service_subnet", mode="before")
    @classmethod
    def _net_from_str(cls, v: Any) -> Any:
        return ipaddress.IPv4Network(v) if isinstance(v, str) else v

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, v: Any) -> Any:
        if isinstance(v, float):  # `version: 1.37` unquoted: YAML reads a float
            raise ValueError(f"quote the version: write \"{v}\" (YAML reads {v} as a number)")
        if isinstance(v, str) and not VERSION_RE.match(v):
            raise ValueError("expected MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. \"1.37\"")
        return v

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


class Host(_Strict):
    firewall: Literal["disabled", "ports"] = "disabled"
    selinux: Literal["permissive", "disabled"] = "permissive"


class Registry(_Strict):
    port: int = Field(5000, ge=1, le=65535)
    auth: bool = True  # htpasswd auth with a generated password
    user: str = "labctl"


class Box(_Strict):
    # provider vagrant: the box; default labctl's own (libvirt, debian12) or labctl.providers.vagrant.BOXES
    name: str | None = None  # a registry name (owner/box), an http(s):// URL or a local .box file
    version: str | None = None  # the pinned box version (a registry name or a catalog URL)


class Addons(_Strict):
    cni: Literal["flannel"] = "flannel"
    ingress: Literal["traefik", "ingress-nginx", "none"] = "traefik"
    ingress_http_nodeport: int = Field(30080, ge=30000, le=32767)
    ingress_https_nodeport: int = Field(30443, ge=30000, le=32767)
    metrics_server: bool = True
    dashboard: Literal["headlamp", "kubernetes-dashboard", "none"] = "headlamp"
    dashboard_nodeport: int = Field(30001, ge=30000, le=32767)
    dashboard_admin: bool = False  # also create a cluster-admin account
    monitoring: Literal["kube-prometheus-stack", "none"] = "kube-prometheus-stack"
    grafana_nodeport: int = Field(30002, ge=30000, le=32767)


class Lab(_Strict):
    name: str
    provider: Provider
    os: OsName = "debian12"
    network: Network
    nodes: list[Node] = Field(min_length=1)
    kubernetes: Kubernetes = Kubernetes()
    host: Host = Host()
    registry: Registry = Registry()
    box: Box = Box()
    addons: Addons = Addons()

    # -- derived views -------------------------------------------------------
    def by_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if n.role == role]

    @property
    def control_planes(self) -> list[Node]:
        return self.by_role("control-plane")

    @property
    def workers(self) -> list[Node]:
        return self.by_role("worker")

    @property
    def registry_node(self) -> Node | None:
        nodes = self.by_role("registry")
        return nodes[0] if nodes else None

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise UserError(f"no node named {name!r} in lab {self.name!r} "
                        f"(nodes: {', '.join(n.name for n in self.nodes)})")


# ---------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    path: str  # "nodes[1].ip", or "" for the whole file
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.level}: {where}{self.message}"


class LabError(UserError):
    """lab.yml is not valid; holds every finding."""

    def __init__(self, source: str, findings: list[Finding]):
        self.source = source
        self.findings = findings
        lines = [f"{source}: {len(findings)} problem(s)"] + [f"  {f}" for f in findings]
        super().__init__("\n".join(lines))


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class whose field set applies at `loc` (for did-you-mean)."""
    model: type[BaseModel] = Lab
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        candidates = [ann, *(inner or ())]
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            return None
        model = nxt
    return model


def _describe_allowed(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return f"allowed: {ctx['expected']}"
    return ""


def _finding_from_pydantic(err: dict[str, Any]) -> Finding:
    loc = tuple(err["loc"])
    path = format_path(loc)
    typ = err["type"]
    value = err.get("input")
    if typ == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = sorted(parent.model_fields) if parent else []
        key = str(loc[-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return Finding("error", path, f"unknown key {key!r}{hint} (allowed keys: {', '.join(allowed)})")
    if typ == "missing":
        return Finding("error", path, "required key is missing")
    if typ == "literal_error":
        return Finding("error", path, f"found {value!r}; {_describe_allowed(err)}")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if isinstance(value, (dict, list)):
        return Finding("error", path, f"{msg} (found a {type(value).__name__})")
    return Finding("error", path, f"{msg} (found {value!r})")


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def parse_lab(data: Any, source: str = "lab.yml") -> Lab:
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise LabError(source, [Finding("error", "", f"expected a mapping of keys (name, provider, nodes, ...), found {found}")])
    try:
        lab = Lab.model_validate(data)
    except ValidationError as exc:
        findings = [_finding_from_pydantic(e) for e in exc.errors()]
        raise LabError(source, findings) from None
    errors = [f for f in cross_check(lab) if f.level == "error"]
    if errors:
        raise LabError(source, errors)
    return lab


def load_lab(path: Path) -> Lab:
    """Read and validate lab.yml; raise LabError (exit 2) on any problem."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{source}: no such file (create one with `labctl init`)") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UserError(f"{source}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise LabError(source, [Finding("error", "", f"YAML syntax error at {where}: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise LabError(source, [Finding("error", "", f"YAML error: {exc}")]) from None
    return parse_lab(data, source)


def lab_warnings(lab: Lab) -> list[Finding]:
    return [f for f in cross_check(lab) if f.level == "warning"]


# ---------------------------------------------------------------------------
# Cross-checks (what a schema cannot say)
# ---------------------------------------------------------------------------


def cross_check(lab: Lab) -> list[Finding]:
    out: list[Finding] = []
    err = lambda p, m: out.append(Finding("error", p, m))  # noqa: E731
    warn = lambda p, m: out.append(Finding("warning", p, m))  # noqa: E731

    if not DNS_LABEL.match(lab.name):
        err("name", f"found {lab.name!r}; a lab name must be a DNS label (lower-case letters, digits, '-', at most 63)")
    if lab.os not in PROVIDER_OS[lab.provider]:
        err("os", f"found {lab.os!r}; provider {lab.provider!r} supports: {', '.join(PROVIDER_OS[lab.provider])}")

    if lab.kubernetes.bundle:
        from labctl import bundle_manifest

        rel = versions.KUBERNETES.get(lab.kubernetes.minor)
        patch = lab.kubernetes.version if lab.kubernetes.version.count(".") == 2 else (rel.patch if rel else "")
        for msg in bundle_manifest.problems(lab.kubernetes.bundle, patch, bundle_manifest.ROLE_BINARIES):
            err("kubernetes.bundle", msg)

    # nodes -------------------------------------------------------------------
    net = lab.network.cidr
    seen_names: dict[str, int] = {}
    seen_ips: dict[ipaddress.IPv4Address, int] = {}
    for i, n in enumerate(lab.nodes):
        p = f"nodes[{i}]"
        if not DNS_LABEL.match(n.name):
            err(f"{p}.name", f"found {n.name!r}; a node name must be a DNS label "
                "(lower-case letters, digits and '-', not starting or ending with '-', at most 63)")
        if n.name in seen_names:
            err(f"{p}.name", f"found {n.name!r}, already used by nodes[{seen_names[n.name]}]; names must be unique")
        seen_names.setdefault(n.name, i)
        if n.ip in seen_ips:
            err(f"{p}.ip", f"found {n.ip}, already used by nodes[{seen_ips[n.ip]}]; addresses must be unique")
        seen_ips.setdefault(n.ip, i)
        if n.ip not in net:
            err(f"{p}.ip", f"found {n.ip}, outside network.cidr {net}")
        elif net.prefixlen < 31 and n.ip in (net.network_address, net.broadcast_address):
            which = "network" if n.ip == net.network_address else "broadcast"
            err(f"{p}.ip", f"found {n.ip}, the {which} address of {net}; use a host address")
        elif lab.provider in ("docker", "vagrant") and net.prefixlen < 31 and n.ip == net.network_address + 1:
            err(f"{p}.ip", f"found {n.ip}, the gateway address {lab.provider} gives the host on {net}; "
                f"use another host address")
        if n.role == "control-plane":
            if n.cpus < versions.CONTROL_PLANE_MIN_CPUS:
                err(f"{p}.cpus", f"found {n.cpus}; kubeadm needs at least "
                    f"{versions.CONTROL_PLANE_MIN_CPUS} CPUs on a control-plane node")
            if n.memory_mb < versions.CONTROL_PLANE_MIN_MEMORY_MB:
                err(f"{p}.memory_mb", f"found {n.memory_mb}; kubeadm needs at least "
                    f"{versions.CONTROL_PLANE_MIN_MEMORY_MB} MB on a control-plane node")
        ssh_fields = {"ssh_host": n.ssh_host, "ssh_user": n.ssh_user, "ssh_key": n.ssh_key}
        if lab.provider == "existing":
            for key, value in ssh_fields.items():
                if key != "ssh_key" and not value:
                    err(f"{p}.{key}", "required for provider 'existing' (how labctl reaches this machine)")
        else:
            for key, value in ssh_fields.items():
                if value:
                    err(f"{p}.{key}", f"only used with provider 'existing' (this lab's provider is {lab.provider!r}); remove it")

    cps = lab.control_planes
    if not cps:
        err("nodes", "no node has role 'control-plane'; a lab needs at least one")
    elif len(cps) % 2 == 0:
        warn("nodes", f"{len(cps)} control-plane nodes: etcd needs an odd number for quorum (1, 3, 5); "
             f"{len(cps)} tolerates no more failures than {len(cps) - 1}")
    registries = lab.by_role("registry")
    if len(registries) > 1:
        err("nodes", f"{len(registries)} nodes have role 'registry' ({', '.join(n.name for n in registries)}); at most one")
    if not registries and lab.kubernetes.mirror_images:
        err("kubernetes.mirror_images", "is true (images are pulled from the lab registry) but no node has role "
            "'registry'; add a registry node or set kubernetes.mirror_images: false")
    if not lab.workers:
        warn("nodes", "no worker node: workloads will only run if the control-plane taint is removed")

    # networks ----------------------------------------------------------------
    k8s = lab.kubernetes
    nets = {"network.cidr": net, "kubernetes.pod_subnet": k8s.pod_subnet, "kubernetes.service_subnet": k8s.service_subnet}
    names = list(nets)
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            if nets[names[a]].overlaps(nets[names[b]]):
                err(names[b], f"{nets[names[b]]} overlaps {names[a]} {nets[names[a]]}; the three networks must be disjoint")
    if k8s.pod_subnet.prefixlen > 22:
        err("kubernetes.pod_subnet", f"found {k8s.pod_subnet}; flannel gives each node a /24, so the pod subnet "
            "must be /22 or larger (e.g. 10.244.0.0/16)")
    elif 2 ** (24 - k8s.pod_subnet.prefixlen) < len(lab.nodes):
        err("kubernetes.pod_subnet", f"{k8s.pod_subnet} holds {2 ** (24 - k8s.pod_subnet.prefixlen)} node /24s, "
            f"fewer than {len(lab.nodes)} nodes")
    if k8s.service_subnet.prefixlen > 24:
        err("kubernetes.service_subnet", f"found {k8s.service_subnet}; use /24 or larger (e.g. 10.254.0.0/16)")
    if not re.match(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$", k8s.dns_domain):
        err("kubernetes.dns_domain", f"found {k8s.dns_domain!r}; expected a DNS domain such as cluster.local")

    # versions ----------------------------------------------------------------
    minor = k8s.minor
    mt = versions.minor_tuple(minor)
    if mt < versions.KUBEADM_V1BETA4_SINCE:
        err("kubernetes.version", f"found {k8s.version!r}; kubeadm's v1beta4 configuration needs 1.31 or newer "
            f"(known: {', '.join(versions.known_minors())})")
    elif minor not in versions.KUBERNETES:
        err("kubernetes.version", f"found {k8s.version!r}; labctl knows {', '.join(versions.known_minors())}")
    if k8s.proxy_mode == "ipvs":
        if mt >= versions.IPVS_REMOVED_SINCE:
            err("kubernetes.proxy_mode", f"ipvs is disabled upstream from 1.{versions.IPVS_REMOVED_SINCE[1]} on "
                f"(found version {k8s.version}); use nftables")
        elif mt >= versions.IPVS_DEPRECATED_SINCE:
            warn("kubernetes.proxy_mode", f"ipvs is deprecated upstream since 1.{versions.IPVS_DEPRECATED_SINCE[1]} "
                 "(KEP-5495); nftables is its successor")
    if minor in versions.KUBERNETES:
        chosen = {
            "addons.cni": lab.addons.cni,
            "addons.ingress": lab.addons.ingress,
            "addons.dashboard": lab.addons.dashboard,
            "addons.monitoring": lab.addons.monitoring,
        }
        if lab.addons.metrics_server:
            chosen["addons.metrics_server"] = "metrics-server"
        if any(v not in ("none", "flannel") for v in chosen.values()):
            chosen["(helm)"] = "helm"
        for path, value in chosen.items():
            if value == "none":
                continue
            rel = versions.ADDONS[value]
            if not versions.addon_supports(value, minor):
                err(path if not path.startswith("(") else "kubernetes.version",
                    f"{value} {rel.version} is known to work with Kubernetes {rel.min_minor} to {rel.max_minor}, "
                    f"not {minor}; choose another version or addon")
            elif rel.retired:
                warn(path, rel.retired)

    # ports -------------------------------------------------------------------
    ports = {
        "addons.ingress_http_nodeport": lab.addons.ingress_http_nodeport if lab.addons.ingress != "none" else None,
        "addons.ingress_https_nodeport": lab.addons.ingress_https_nodeport if lab.addons.ingress != "none" else None,
        "addons.dashboard_nodeport": lab.addons.dashboard_nodeport if lab.addons.dashboard != "none" else None,
        "addons.grafana_nodeport": lab.addons.grafana_nodeport if lab.addons.monitoring != "none" else None,
    }
    used: dict[int, str] = {}
    for path, port in ports.items():
        if port is None:
            continue
        if port in used:
            err(path, f"NodePort {port} is already used by {used[port]}")
        used.setdefault(port, path)

    # host --------------------------------------------------------------------
    if lab.host.selinux == "disabled" and lab.os != "rocky9":
        warn("host.selinux", f"SELinux is not used on {lab.os}; the setting only applies to rocky9")
    return out
