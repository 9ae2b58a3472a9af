"""lab.yml: load, validate, cross-check. Returns data; never prints.

`load_lab(path)` returns a `Lab` or raises `LabError` holding every problem
found, each with the field path (`nodes[1].ip`), the value found and what is
allowed. `cross_check(lab)` returns the semantic findings (errors and
warnings) that a schema alone cannot express.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from labctl.errors import UserError
from labctl.model import ports, versions
from labctl.model.facts import enabled_addons, kubernetes_patch

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
VERSION_RE = re.compile(r"^1\.\d{1,2}(\.\d{1,3})?$")
# A user name that useradd, sshd and htpasswd all take: a letter or '_', then letters, digits, '_', '.', '-'.
USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
USER_RULE = "a user name: a letter or '_', then letters, digits, '_', '.' or '-', at most 32"


def _not_empty(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty; write a value or remove the key")
    return v


# Every string lab.yml holds: an empty (or blank) one is refused, never taken as "not set".
Text = Annotated[str, AfterValidator(_not_empty)]

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


_MINORS = versions.known_minors()
_EXISTING = "provider `existing` only"


class Node(_Strict):
    name: Text = Field(description="host name; a DNS label, unique among the nodes")
    role: Role = Field(description="at least one control plane (an odd number for etcd quorum), at most one registry")
    ip: ipaddress.IPv4Address = Field(
        description="the node's lab address (also the address Kubernetes advertises); unique, a host address inside "
                    "`network.cidr`")
    cpus: int = Field(2, ge=1, le=64, description=f"control planes need ≥ {versions.CONTROL_PLANE_MIN_CPUS} "
                                                  "(kubeadm preflight)")
    memory_mb: int = Field(2048, ge=512, le=262144,
                           description=f"control planes need ≥ {versions.CONTROL_PLANE_MIN_MEMORY_MB} "
                                       "(kubeadm preflight)")
    # provider: existing — how to reach a real machine
    ssh_host: Text | None = Field(None, description=f"{_EXISTING} (required there): the host name or IP address "
                                                   "labctl reaches the machine at")
    ssh_user: Text | None = Field(None, description=f"{_EXISTING} (required there); a user name (below) with "
                                                   "passwordless sudo")
    ssh_key: Text | None = Field(None, description=f"{_EXISTING}: a readable private key file on the controller, an "
                                                  "absolute path (or `~/…`); without it, ssh's defaults")
    ssh_port: int = Field(22, ge=1, le=65535, description=f"{_EXISTING} (any other provider: 22); no port the node "
                                                          "already serves (below)")

    @field_validator("ip", mode="before")
    @classmethod
    def _ip_from_str(cls, v: Any) -> Any:
        return ipaddress.IPv4Address(v) if isinstance(v, str) else v


class Network(_Strict):
    cidr: ipaddress.IPv4Network = Field(
        description="the node network; every node IP is a host address inside it (not the network, broadcast or, "
                    "for docker/vagrant, the `.1` gateway address)")

    @field_validator("cidr", mode="before")
    @classmethod
    def _net_from_str(cls, v: Any) -> Any:
        return ipaddress.IPv4Network(v) if isinstance(v, str) else v


class Kubernetes(_Strict):
    version: str = Field(
        versions.DEFAULT_KUBERNETES,
        description=f"`\"{_MINORS[0]}\"`–`\"{_MINORS[-1]}\"`, or an exact patch such as `\"{_MINORS[-1]}.0\"`; "
                    "quote it; a minor uses the pinned patch (`labctl/model/versions.py`)")
    pod_subnet: ipaddress.IPv4Network = Field(
        ipaddress.IPv4Network("10.244.0.0/16"),
        description="/22 or larger; flannel's `Network` is derived from it (one setting)")
    service_subnet: ipaddress.IPv4Network = Field(
        ipaddress.IPv4Network("10.254.0.0/16"),
        description="/24 or larger; must not overlap the pod subnet or the node network")
    proxy_mode: Literal["ipvs", "nftables", "iptables"] = Field(
        "ipvs",
        description=f"kube-proxy's mode; ipvs is deprecated upstream since 1.{versions.IPVS_DEPRECATED_SINCE[1]} "
                    f"(a warning) and disabled from 1.{versions.IPVS_REMOVED_SINCE[1]} (an error); `labctl init` "
                    "picks nftables for the container lab (no ip_vs modules in containers)")
    dns_domain: Text = Field("cluster.local", description="the cluster domain, a DNS domain")
    packages_dir: Text | None = Field(
        None,
        description="offline `.deb`/`.rpm` directory for kubeadm/kubelet/kubectl (the course's local repo): an "
                    "absolute path (or `~/…`) of a readable directory on the controller; must hold those three at "
                    "the lab's exact version (`.rpm` on rocky9, else `.deb`), and "
                    "`helm-v<version>-linux-<arch>.tar.gz` when an addon is installed with Helm")
    bundle: str | None = Field(
        None,
        description="an offline bundle directory on the controller (`labctl bundle build`; see Offline bundle "
                    "above): everything is installed from it instead of pkgs.k8s.io and the upstream registries; "
                    "it must be whole and built for the lab's Kubernetes patch")
    mirror_images: bool = Field(
        True,
        description="every image is copied into the lab registry and pulled only from there (needs a `registry` "
                    "node)")

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
    firewall: Literal["disabled", "ports"] = Field(
        "disabled",
        description="stop the firewall, or keep it and open exactly the Kubernetes ports (one table by node role in "
                    "`roles/firewall/defaults/main.yml`, including the scrape ports: node-exporter 9100, kube-proxy "
                    "10249/10256 and the kubelet on every node, etcd metrics 2381 on control planes)")
    selinux: Literal["permissive", "disabled"] = Field("permissive", description="EL (rocky9) only")


class Registry(_Strict):
    port: int = Field(5000, ge=1, le=65535, description="the private registry (TLS from the lab CA); no port the "
                                                        "registry host already serves (below)")
    auth: bool = Field(True, description="htpasswd (bcrypt) auth with a generated password")
    user: Text = Field("labctl", description="the registry user; a user name (below)")


class Box(_Strict):
    # provider vagrant: the box; default labctl's own (libvirt, debian12) or labctl.machines.vagrant.BOXES
    name: str | None = Field(
        None,
        description="provider vagrant: the box, a registry name (owner/box), an http(s):// URL or a local `.box` "
                    "file; by default labctl's own for libvirt + debian12 (labctl/debian12, built by `labctl box "
                    "build`), else a registry box per os")
    version: str | None = Field(None, description="the pinned box version (of a registry name or a catalog URL)")


class Addons(_Strict):
    cni: Literal["flannel"] = Field("flannel", description="the pod network")
    ingress: Literal["traefik", "ingress-nginx", "none"] = Field(
        "traefik", description="the ingress controller; ingress-nginx is retired upstream (a warning)")
    ingress_http_nodeport: int = Field(30080, ge=30000, le=32767, description="the ingress controller's HTTP "
                                                                              "NodePort")
    ingress_https_nodeport: int = Field(30443, ge=30000, le=32767, description="the ingress controller's HTTPS "
                                                                               "NodePort")
    metrics_server: bool = Field(True, description="metrics-server with verified kubelet serving certificates")
    dashboard: Literal["headlamp", "kubernetes-dashboard", "none"] = Field(
        "headlamp", description="the web UI; kubernetes-dashboard is archived upstream")
    dashboard_nodeport: int = Field(30001, ge=30000, le=32767, description="the web UI's NodePort")
    dashboard_admin: bool = Field(False, description="also create a cluster-admin account (read-only by default)")
    monitoring: Literal["kube-prometheus-stack", "none"] = Field(
        "kube-prometheus-stack", description="Prometheus, Alertmanager, node-exporter, Grafana")
    grafana_nodeport: int = Field(30002, ge=30000, le=32767, description="Grafana's NodePort (the course's port)")


class Lab(_Strict):
    name: Text = Field(description="the lab's name, a DNS label; state in `.labctl/<name>/`, inventory in "
                                   "`inventory/<name>/`")
    provider: Provider = Field(description="VMs via Vagrant (VirtualBox/libvirt), the container lab (Vagrant's "
                                           "docker provider), or machines you already have")
    os: OsName = Field("debian12", description="the nodes' OS; the container lab is `debian12` only")
    network: Network
    nodes: list[Node] = Field(min_length=1, description="one entry per machine")
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


class _DuplicateKeys(Exception):
    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__(findings)


def _duplicate_keys(node: yaml.Node, loc: tuple[Any, ...], seen: set[int]) -> list[Finding]:
    """Every mapping key written twice under `node`, as yamllint's key-duplicates rule finds them."""
    if id(node) in seen:  # an alias: its anchor's node was walked already
        return []
    seen.add(id(node))
    out: list[Finding] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], yaml.Node] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                ident = (key.tag, key.value)
                if ident in first:
                    out.append(Finding("error", format_path((*loc, key.value)),
                                       f"line {key.start_mark.line + 1}: key {key.value!r} written twice (first at line "
                                       f"{first[ident].start_mark.line + 1}); remove one"))
                first.setdefault(ident, key)
                out += _duplicate_keys(value, (*loc, key.value), seen)
            else:
                out += _duplicate_keys(value, loc, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += _duplicate_keys(item, (*loc, i), seen)
    return out


class LabLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping key written twice (instead of the last one silently winning)."""

    def construct_document(self, node: yaml.Node) -> Any:
        duplicates = _duplicate_keys(node, (), set())
        if duplicates:
            raise _DuplicateKeys(duplicates)
        return super().construct_document(node)


def _controller_path(path: str, where: str, kind: Literal["file", "dir", "any"]) -> tuple[Path | None, str]:
    """(the path, "") when `path` on this machine is a readable `kind`, else (None, what is wrong)."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        return None, (f"found {path!r}, a relative path; write an absolute path (or ~/...): {where} is read by "
                      "labctl and by Ansible, which run in different directories")
    if not p.exists():
        return None, f"found {path!r}; no such {'directory' if kind == 'dir' else 'file'} on this machine"
    if kind == "dir" and not p.is_dir():
        return None, f"found {path!r}, which is not a directory"
    if kind == "file" and not p.is_file():
        return None, f"found {path!r}, which is not a file"
    if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0)):
        return None, f"found {path!r}, which this user cannot read"
    return p, ""


def controller_check(lab: Lab) -> list[Finding]:
    """The paths lab.yml names on the machine labctl runs on: each exists, has the right kind and holds what it must."""
    out: list[Finding] = []
    err = lambda p, m: out.append(Finding("error", p, m))  # noqa: E731
    for i, n in enumerate(lab.nodes):
        if n.ssh_key is None:
            continue
        key, problem = _controller_path(n.ssh_key, "the key", "file")
        if key is None:
            err(f"nodes[{i}].ssh_key", problem)
            continue
        with key.open("rb") as fh:
            head = fh.read(64)
        if not (head.startswith(b"-----BEGIN ") and b"PRIVATE KEY-----" in head.split(b"\n")[0]):
            public = " (it looks like a public key: name the file without .pub)" if head.startswith(b"ssh-") else ""
            err(f"nodes[{i}].ssh_key", f"found {n.ssh_key!r}, which holds no private key{public}; expected a "
                "'-----BEGIN ... PRIVATE KEY-----' file, as ssh -i takes")
    k8s = lab.kubernetes
    if k8s.packages_dir is not None:
        pkgs, problem = _controller_path(k8s.packages_dir, "the directory", "dir")
        if pkgs is None:
            err("kubernetes.packages_dir", problem)
        else:
            missing = packages_dir_missing(lab, pkgs)
            if missing:
                err("kubernetes.packages_dir", f"{k8s.packages_dir} lacks {', '.join(missing)}; put them there, "
                    "or remove packages_dir to download them")
    bundle = getattr(k8s, "bundle", None)  # its contents are checked where the bundle is read
    if bundle is not None and not Path(bundle).expanduser().exists():
        err("kubernetes.bundle", f"found {bundle!r}; no such file or directory on this machine")
    return out


def packages_dir_missing(lab: Lab, pkgs: Path) -> list[str]:
    """What the packages and addons phases take from kubernetes.packages_dir and it does not hold.

    The kubernetes_packages role installs every .deb (.rpm on rocky9) there and needs kubeadm,
    kubelet and kubectl at the lab's exact version; with a Helm-installed addon, the helm role
    copies Helm's release tarball (helm-v<version>-linux-<arch>.tar.gz) from there.
    """
    ext = "rpm" if lab.os == "rocky9" else "deb"
    patch = kubernetes_patch(lab.kubernetes)
    names = {m.group(1) for f in pkgs.glob(f"*.{ext}") if patch in f.name
             for m in [re.match(r"^([a-z-]+?)[-_][0-9]", f.name)] if m}
    missing = [f"{name} {patch} (.{ext})" for name in ("kubeadm", "kubelet", "kubectl") if name not in names]
    if enabled_addons(lab):  # every addon chart is installed with Helm
        helm = versions.ADDONS["helm"].version
        if not any(pkgs.glob(f"helm-v{helm}-linux-*.tar.gz")):
            missing.append(f"helm-v{helm}-linux-<arch>.tar.gz")
    return missing


def parse_lab(data: Any, source: str = "lab.yml", *, controller: bool = False) -> Lab:
    """Validate lab.yml's data; `controller` also checks the paths it names on this machine."""
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise LabError(source, [Finding("error", "", f"expected a mapping of keys (name, provider, nodes, ...), found {found}")])
    try:
        lab = Lab.model_validate(data)
    except ValidationError as exc:
        findings = [_finding_from_pydantic(e) for e in exc.errors()]
        raise LabError(source, findings) from None
    errors = [f for f in cross_check(lab) if f.level == "error"]
    if controller:
        errors += controller_check(lab)
    if errors:
        raise LabError(source, errors)
    return lab


def read_lab_data(path: Path) -> Any:
    """Read lab.yml's YAML (duplicate keys refused); UserError/LabError (exit 2) when it cannot be read."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{source}: no such file (create one with `labctl init`)") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UserError(f"{source}: cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=LabLoader)  # noqa: S506 -- a SafeLoader
    except _DuplicateKeys as exc:
        raise LabError(source, exc.findings) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise LabError(source, [Finding("error", "", f"YAML syntax error at {where}: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise LabError(source, [Finding("error", "", f"YAML error: {exc}")]) from None


def load_lab(path: Path) -> Lab:
    """Read and validate lab.yml; raise LabError (exit 2) on any problem."""
    return parse_lab(read_lab_data(path), str(path), controller=True)


def schema_lab(path: Path) -> Lab:
    """lab.yml checked against the schema only (no cross-checks): for a command that prepares what
    the cross-checks look for (`labctl bundle build --lab`)."""
    data = read_lab_data(path)
    try:
        return Lab.model_validate(data)
    except ValidationError as exc:
        raise LabError(str(path), [_finding_from_pydantic(e) for e in exc.errors()]) from None


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
        from labctl.bundle import manifest as bundle_manifest

        patch = kubernetes_patch(lab.kubernetes, unknown="")
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
            if n.ssh_user and not USER_RE.match(n.ssh_user):
                err(f"{p}.ssh_user", f"found {n.ssh_user!r}; expected {USER_RULE}")
        else:
            for key, value in ssh_fields.items():
                if value:
                    err(f"{p}.{key}", f"only used with provider 'existing' (this lab's provider is {lab.provider!r}); remove it")
            if n.ssh_port != 22:
                err(f"{p}.ssh_port", f"found {n.ssh_port}; only used with provider 'existing' (this lab's provider is "
                    f"{lab.provider!r}, whose nodes answer SSH on 22); remove it")

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
        on = enabled_addons(lab)
        chosen = {"addons.cni": lab.addons.cni} | {f"addons.{role}": on[role] for role in
                                                   ("ingress", "dashboard", "monitoring", "metrics_server") if role in on}
        if len(chosen) > 1:  # an addon chart: Helm installs it
            chosen["(helm)"] = "helm"
        for path, value in chosen.items():
            rel = versions.ADDONS[value]
            if not versions.addon_supports(value, minor):
                err(path if not path.startswith("(") else "kubernetes.version",
                    f"{value} {rel.version} is known to work with Kubernetes {rel.min_minor} to {rel.max_minor}, "
                    f"not {minor}; choose another version or addon")
            elif rel.retired:
                warn(path, rel.retired)

    # ports -------------------------------------------------------------------
    on = enabled_addons(lab)
    ports = {
        "addons.ingress_http_nodeport": lab.addons.ingress_http_nodeport if "ingress" in on else None,
        "addons.ingress_https_nodeport": lab.addons.ingress_https_nodeport if "ingress" in on else None,
        "addons.dashboard_nodeport": lab.addons.dashboard_nodeport if "dashboard" in on else None,
        "addons.grafana_nodeport": lab.addons.grafana_nodeport if "monitoring" in on else None,
    }
    used: dict[int, str] = {}
    for path, port in ports.items():
        if port is None:
            continue
        if port in used:
            err(path, f"NodePort {port} is already used by {used[port]}")
        used.setdefault(port, path)
    out.extend(port_collisions(lab))

    # registry ----------------------------------------------------------------
    if not USER_RE.match(lab.registry.user):
        err("registry.user", f"found {lab.registry.user!r}; expected {USER_RULE}")

    # host --------------------------------------------------------------------
    if lab.host.selinux == "disabled" and lab.os != "rocky9":
        warn("host.selinux", f"SELinux is not used on {lab.os}; the setting only applies to rocky9")
    return out


def port_collisions(lab: Lab) -> list[Finding]:
    """Every port lab.yml sets on a host against what that host already serves (labctl.model.ports)."""
    out: list[Finding] = []
    addons = lab.addons.model_dump()
    for i, n in enumerate(lab.nodes):
        ssh_port = n.ssh_port if lab.provider == "existing" else 22
        served = ports.served_on(n.role, ssh_port, addons)
        mine: list[tuple[str, int]] = []  # (field path, port) lab.yml sets on this host
        if lab.provider == "existing":
            mine.append((f"nodes[{i}].ssh_port", n.ssh_port))
        if n.role == "registry":
            mine.append(("registry.port", lab.registry.port))
        for path, port in mine:
            others = [s for s in served if not (path.endswith(".ssh_port") and s.what == "sshd")]
            hit = next((s for s in others if port in s), None)
            if hit is None:
                continue
            out.append(Finding("error", path, f"found {port}, already taken on {n.role} node {n.name!r} (nodes[{i}]) "
                               f"by {hit}; choose a port outside what that host serves: "
                               f"{', '.join(str(s) for s in others)}"))
    return out
