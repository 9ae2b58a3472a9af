"""What the Kubernetes roles render for a lab, validated without a cluster.

Each lab variant is rendered once per session by the real playbooks/render.yml
(ansible-playbook, local connection, no facts) with the Kubernetes roles
(kubernetes_packages, kubeadm_init, kubeadm_join, flannel); the files are then
checked: Kubernetes objects with kubernetes-validate (strict) for the lab's
minor, kubeadm/kubelet/kube-proxy documents against labctl.provisioning.kubeadm_schema, and
the lab.yml values (addresses, pod CIDR, proxy mode, images) where they belong.
Rendering only these roles keeps one variant at ~20 s instead of ~90 s for all.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest
import yaml

from labctl.model.config import load_lab
from labctl.model.images import lab_images
from labctl.provisioning.inventory import group_vars_document
from labctl.provisioning.kubeadm_schema import check_documents
from labctl.provisioning.manifests import load_documents, validate_documents
from labctl.provisioning.render import render_all
from labctl.state import StateDir

from .conftest import base_lab

REPO = Path(__file__).resolve().parents[2]
ROLES = ["flannel", "kubeadm_init", "kubeadm_join", "kubernetes_packages"]
MY_ROLES = ROLES + ["image_mirror"]


def _nodes(cps: int, workers: int, registry: bool) -> list[dict]:
    out = [{"name": f"cp{i + 1}" if cps > 1 else "master", "role": "control-plane", "ip": f"192.168.56.{21 + i}"}
           for i in range(cps)]
    out += [{"name": f"node{i + 1}", "role": "worker", "ip": f"192.168.56.{31 + i}"} for i in range(workers)]
    if registry:
        out.append({"name": "registry", "role": "registry", "ip": "192.168.56.100"})
    return out


def _variant(name: str, *, provider="docker", cps=1, workers=1, registry=True, **kubernetes) -> tuple[str, dict]:
    data = base_lab()
    data["name"] = name
    data["provider"] = provider
    data["nodes"] = _nodes(cps, workers, registry)
    data["kubernetes"].update(kubernetes)
    return name, data


VARIANTS = dict([
    _variant("default"),  # 1.37, nftables, the container lab
    _variant("ha", provider="vagrant", cps=3, workers=2, proxy_mode="ipvs"),
    _variant("legacy", provider="vagrant", version="1.35", proxy_mode="iptables", pod_subnet="10.32.0.0/16"),
    _variant("noreg", registry=False, version="1.36", mirror_images=False, proxy_mode="iptables"),
    _variant("single", workers=0),  # one node: it must take workloads and addons
])


class Rendered:
    def __init__(self, name: str, lab_file: Path, out: Path):
        self.name = name
        self.lab = load_lab(lab_file)
        self.out = out
        self.vars = group_vars_document(self.lab, StateDir(lab_file, self.lab.name))
        self.cps = [n for n in self.lab.nodes if n.role == "control-plane"]
        self.k8s_nodes = [n for n in self.lab.nodes if n.role != "registry"]
        self.registry = self.vars["lab_registry"]["address"] if self.lab.kubernetes.mirror_images else ""

    def docs(self, rel: str) -> list:
        return load_documents(self.out / rel)

    def kind(self, rel: str, kind: str) -> dict:
        return next(d for d in self.docs(rel) if d.get("kind") == kind)

    @property
    def init_file(self) -> str:
        return f"{self.cps[0].name}/etc/kubernetes/kubeadm/kubeadm-init.yaml"

    def join_file(self, node: str) -> str:
        return f"{node}/etc/kubernetes/kubeadm/kubeadm-join.yaml"

    FLANNEL = "cluster/kube-flannel.yaml"


@pytest.fixture(scope="session", params=sorted(VARIANTS))
def rendered(request, tmp_path_factory) -> Rendered:
    name = request.param
    d = tmp_path_factory.mktemp(f"lab-{name}")
    lab_file = d / "lab.yml"
    lab_file.write_text(yaml.safe_dump(VARIANTS[name], sort_keys=False))
    lab = load_lab(lab_file)
    out = d / "rendered"
    render_all(lab, lab_file, out, roles=ROLES)  # what `labctl render` does, for these roles
    return Rendered(name, lab_file, out)


# -- the files exist where the roles put them -------------------------------------------------------
def test_expected_files(rendered: Rendered):
    files = {str(p.relative_to(rendered.out)) for p in rendered.out.rglob("*") if p.is_file()}
    assert rendered.init_file in files
    assert f"{rendered.cps[0].name}/etc/kubernetes/audit/policy.yaml" in files
    assert rendered.FLANNEL in files
    joiners = [n.name for n in rendered.k8s_nodes if n.name != rendered.cps[0].name]
    assert {f for f in files if f.endswith("kubeadm-join.yaml")} == {rendered.join_file(n) for n in joiners}
    for n in rendered.k8s_nodes:
        assert f"{n.name}/etc/apt/sources.list.d/kubernetes.sources" in files


# -- kubeadm ------------------------------------------------------------------------------------------
def test_kubeadm_files_have_no_empty_document(rendered: Rendered):
    """kubeadm splits its --config on '---' lines and refuses a document without kind/apiVersion
    ("kind and apiVersion is mandatory"), where yaml.safe_load_all skips it: a comment-only header
    before the first '---' stopped the first real kubeadm init (Kubernetes 1.37.2)."""
    files = [rendered.init_file] + [rendered.join_file(n.name) for n in rendered.k8s_nodes[1:]]
    for rel in files:
        text = (rendered.out / rel).read_text()
        chunks = re.split(r"(?m)^---[ \t]*$", text)
        for i, chunk in enumerate(chunks):
            doc = yaml.safe_load(chunk)
            assert isinstance(doc, dict) and doc.get("kind") and doc.get("apiVersion"), (rel, i, chunk[:200])


def test_kubeadm_documents_have_only_known_fields(rendered: Rendered):
    docs = rendered.docs(rendered.init_file)
    assert [d["kind"] for d in docs] == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration",
                                         "KubeProxyConfiguration"]
    assert check_documents(docs) == []
    for n in rendered.k8s_nodes[1:]:
        assert check_documents(rendered.docs(rendered.join_file(n.name))) == [], n.name


def test_advertise_address_and_node_ip_are_the_lab_ips(rendered: Rendered):
    init = rendered.kind(rendered.init_file, "InitConfiguration")
    first = rendered.cps[0]
    assert init["localAPIEndpoint"]["advertiseAddress"] == str(first.ip)
    assert init["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": str(first.ip)}]
    assert init["nodeRegistration"]["name"] == first.name
    assert init["nodeRegistration"]["criSocket"] == "unix:///var/run/containerd/containerd.sock"
    for n in rendered.k8s_nodes[1:]:
        join = rendered.kind(rendered.join_file(n.name), "JoinConfiguration")
        assert join["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": str(n.ip)}]
        assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == rendered.vars["lab_control_plane_endpoint"]
        assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", join["discovery"]["bootstrapToken"]["token"])
        if n.role == "control-plane":
            assert join["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] == str(n.ip)
            assert re.fullmatch(r"[0-9a-f]{64}", join["controlPlane"]["certificateKey"])
        else:
            assert "controlPlane" not in join


def test_cluster_configuration_follows_lab_yml(rendered: Rendered):
    cc = rendered.kind(rendered.init_file, "ClusterConfiguration")
    k = rendered.lab.kubernetes
    assert cc["kubernetesVersion"] == f"v{rendered.vars['lab_kubernetes_version']}"
    assert cc["networking"] == {"podSubnet": str(k.pod_subnet), "serviceSubnet": str(k.service_subnet),
                                "dnsDomain": k.dns_domain}
    assert cc["controlPlaneEndpoint"] == rendered.vars["lab_control_plane_endpoint"]
    sans = cc["apiServer"]["certSANs"]
    for n in rendered.cps:
        assert n.name in sans and str(n.ip) in sans
    if len(rendered.cps) > 1:
        assert cc["controlPlaneEndpoint"].rsplit(":", 1)[0] in sans


def _args(component: dict) -> dict[str, str]:
    return {a["name"]: a["value"] for a in component.get("extraArgs", [])}


def test_hardening_and_scrape_settings(rendered: Rendered):
    cc = rendered.kind(rendered.init_file, "ClusterConfiguration")
    api, cm, sched = _args(cc["apiServer"]), _args(cc["controllerManager"]), _args(cc["scheduler"])
    assert api["profiling"] == cm["profiling"] == sched["profiling"] == "false"
    assert api["enable-aggregator-routing"] == "true"
    assert cm["bind-address"] == sched["bind-address"] == "0.0.0.0"
    assert _args(cc["etcd"]["local"])["listen-metrics-urls"] == "http://0.0.0.0:2381"
    # the audit flags point into the volumes that are mounted
    mounts = {v["mountPath"] for v in cc["apiServer"]["extraVolumes"]}
    assert Path(api["audit-policy-file"]).parent.as_posix() in mounts
    assert Path(api["audit-log-path"]).parent.as_posix() in mounts
    policy = rendered.docs(f"{rendered.cps[0].name}{api['audit-policy-file']}")[0]
    assert policy["apiVersion"] == "audit.k8s.io/v1" and policy["kind"] == "Policy" and policy["rules"]
    kubelet = rendered.kind(rendered.init_file, "KubeletConfiguration")
    assert kubelet["cgroupDriver"] == "systemd"
    assert kubelet["serverTLSBootstrap"] is True and kubelet["seccompDefault"] is True
    assert kubelet["podPidsLimit"] > 0 and kubelet["failSwapOn"] is True
    assert kubelet["authentication"]["anonymous"]["enabled"] is False


def test_kube_proxy_mode_and_metrics(rendered: Rendered):
    kp = rendered.kind(rendered.init_file, "KubeProxyConfiguration")
    assert kp["mode"] == rendered.lab.kubernetes.proxy_mode
    assert kp["metricsBindAddress"] == "0.0.0.0:10249"
    assert ("ipvs" in kp) == (kp["mode"] == "ipvs")


# -- flannel ------------------------------------------------------------------------------------------
def test_flannel_manifest_validates_strictly(rendered: Rendered):
    docs = rendered.docs(rendered.FLANNEL)
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                         "ConfigMap", "DaemonSet"]
    assert validate_documents(docs, rendered.lab.kubernetes.minor) == []


def test_the_validation_can_fail(rendered: Rendered):
    """A misspelled field in the rendered DaemonSet is reported (the check above is not vacuous)."""
    ds = rendered.kind(rendered.FLANNEL, "DaemonSet")
    ds["spec"]["template"]["spec"]["hostNetwrok"] = True
    problems = validate_documents([ds], rendered.lab.kubernetes.minor)
    assert problems and "hostNetwrok" in problems[0]


def test_pod_cidr_is_one_setting(rendered: Rendered):
    cm = rendered.kind(rendered.FLANNEL, "ConfigMap")
    net = json.loads(cm["data"]["net-conf.json"])
    cc = rendered.kind(rendered.init_file, "ClusterConfiguration")
    kp = rendered.kind(rendered.init_file, "KubeProxyConfiguration")
    assert net["Network"] == cc["networking"]["podSubnet"] == kp["clusterCIDR"] == str(rendered.lab.kubernetes.pod_subnet)
    assert net["Backend"] == {"Type": "vxlan"}
    json.loads(cm["data"]["cni-conf.json"])


def test_flannel_binds_the_lab_interface(rendered: Rendered):
    ds = rendered.kind(rendered.FLANNEL, "DaemonSet")
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    regex = next(a.split("=", 1)[1] for a in args if a.startswith("--iface-regex="))
    for n in rendered.k8s_nodes:
        assert re.search(regex, str(n.ip)), n
    # not the provider's NAT address, not a neighbour's prefix, not an interface name
    for other in ("10.0.2.15", "172.17.0.2", "192.168.56.2", "192.168.56.210", "eth0", "eth1"):
        assert not re.search(regex, other), other
    if rendered.lab.registry_node:
        assert not re.search(regex, str(rendered.lab.registry_node.ip))


# -- images -------------------------------------------------------------------------------------------
def _manifest_images(docs: list) -> list[str]:
    out = []
    for d in docs:
        spec = d.get("spec", {}).get("template", {}).get("spec", {})
        out += [c["image"] for key in ("initContainers", "containers") for c in spec.get(key, [])]
    return out


def test_every_image_comes_from_the_lab_list(rendered: Rendered):
    listed = lab_images(rendered.lab)
    allowed = {i.mirror if rendered.registry else i.source for i in listed}
    images = _manifest_images(rendered.docs(rendered.FLANNEL))
    assert len(images) == 3 and set(images) <= allowed, (images, allowed)
    cc = rendered.kind(rendered.init_file, "ClusterConfiguration")
    if rendered.registry:
        assert all(i.startswith(rendered.registry + "/") for i in images)
        assert cc["imageRepository"] == rendered.registry
        # what kubeadm will ask for under imageRepository is exactly what `labctl images` mirrors
        kubeadm = {i.mirror for i in listed if i.group == "kubeadm"}
        assert {m.rsplit(":", 1)[0].rsplit("/", 1)[0] for m in kubeadm} == {cc["imageRepository"]}
        for tag, name in ((cc["dns"]["imageTag"], "coredns"), (cc["etcd"]["local"]["imageTag"], "etcd")):
            assert f"{rendered.registry}/{name}:{tag}" in kubeadm
    else:
        assert "imageRepository" not in cc
        assert all(i.startswith("ghcr.io/flannel-io/") for i in images)
    # kubeadm pulls CoreDNS and etcd at labctl's pins, not its own defaults
    assert cc["dns"]["imageTag"] == rendered.vars["lab_coredns_version"]
    assert cc["etcd"]["local"]["imageTag"] == rendered.vars["lab_etcd_version"]


# -- packages -----------------------------------------------------------------------------------------
def test_package_repository_of_the_minor(rendered: Rendered):
    text = (rendered.out / rendered.cps[0].name / "etc/apt/sources.list.d/kubernetes.sources").read_text()
    assert f"URIs: https://pkgs.k8s.io/core:/stable:/v{rendered.lab.kubernetes.minor}/deb/" in text
    assert "Signed-By: /etc/apt/keyrings/kubernetes-apt-keyring.asc" in text


# -- role contract ------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", MY_ROLES)
def test_defaults_and_argument_specs_list_the_same_keys(role: str):
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    assert set(defaults) == set(specs["argument_specs"]["main"]["options"])
    assert all(k.startswith(f"{role}_") for k in defaults)


@pytest.mark.parametrize("role", MY_ROLES)
def test_roles_read_only_lab_variables(role: str):
    """Role files use lab_* variables of the contract, their own <role>_* ones, and Ansible's."""
    contract = set(group_vars_document(load_lab_from(base_lab()), StateDir(Path("/x/lab.yml"), "k8s-lab")))
    contract |= {"lab_render", "lab_render_dir", "lab_render_host_dir", "lab_render_cluster_dir",
                 "lab_rendered", "lab_rendered_cluster", "lab_ip", "lab_role"}
    used = set()
    for p in (REPO / "roles" / role).rglob("*"):
        if p.is_file() and p.suffix in (".yml", ".j2"):
            used |= set(re.findall(r"\blab_[a-z_]+\b", p.read_text()))
    assert used <= contract, used - contract


def load_lab_from(data: dict):
    from labctl.model.config import parse_lab

    return parse_lab(data)


def test_ha_endpoint_name_is_in_every_san_and_join(rendered: Rendered):
    endpoint = rendered.vars["lab_control_plane_endpoint"]
    host = endpoint.rsplit(":", 1)[0]
    is_ip = True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        is_ip = False
    assert is_ip == (len(rendered.cps) == 1)


# -- a lab without workers ------------------------------------------------------------------------------
def test_the_control_plane_is_untainted_only_without_workers(rendered: Rendered):
    """kubeadm registers a control plane with node-role.kubernetes.io/control-plane:NoSchedule unless
    nodeRegistration.taints is an empty list; nothing of the addons tolerates it, so a lab without
    workers registers its control plane untainted (what kind/kubeadm users expect for one node)."""
    reg = rendered.kind(rendered.init_file, "InitConfiguration")["nodeRegistration"]
    if rendered.lab.workers:
        assert "taints" not in reg
    else:
        assert reg["taints"] == []


@pytest.mark.parametrize("emulated", [True, False])
def test_emulated_cpu_settings_only_where_the_cpu_is_emulated(emulated: bool, tmp_path: Path):
    """Under QEMU without KVM (systemd-detect-virt says qemu) kubeadm gets etcd without fsync, longer
    leader-election leases, the probe patches and kubeadm's longer waits; everywhere else upstream's defaults."""
    lab_file = tmp_path / "lab.yml"
    lab_file.write_text(yaml.safe_dump(VARIANTS["default"], sort_keys=False))
    render_all(load_lab(lab_file), lab_file, tmp_path / "out", roles=ROLES,
               facts={"kubeadm_init_cpu_emulated": emulated})
    r = Rendered("default", lab_file, tmp_path / "out")
    cluster = r.kind(r.init_file, "ClusterConfiguration")
    assert (_args(cluster["etcd"]["local"]).get("unsafe-no-fsync") == "true") is emulated
    for component in ("controllerManager", "scheduler"):
        assert (_args(cluster[component]).get("leader-elect-lease-duration") == "60s") is emulated
    init = r.kind(r.init_file, "InitConfiguration")
    assert ("patches" in init) is emulated
    assert (init.get("timeouts", {}).get("kubernetesAPICall") == "5m0s") is emulated
