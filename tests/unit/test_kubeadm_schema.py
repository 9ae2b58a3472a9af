"""labctl.provisioning.kubeadm_schema: the v1beta4 / kubelet / kube-proxy field sets catch unknown and misspelled fields."""

from __future__ import annotations

import copy

import pytest

from labctl.provisioning.kubeadm_schema import check_document, check_documents

INIT = {
    "apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration",
    "localAPIEndpoint": {"advertiseAddress": "192.168.56.21", "bindPort": 6443},
    "nodeRegistration": {"name": "master", "criSocket": "unix:///var/run/containerd/containerd.sock",
                         "kubeletExtraArgs": [{"name": "node-ip", "value": "192.168.56.21"}], "taints": []},
}
CLUSTER = {
    "apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration",
    "kubernetesVersion": "v1.37.0", "controlPlaneEndpoint": "lab-api:6443", "imageRepository": "registry:5000",
    "networking": {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.254.0.0/16", "dnsDomain": "cluster.local"},
    "apiServer": {"certSANs": ["master"], "extraArgs": [{"name": "profiling", "value": "false"}],
                  "extraVolumes": [{"name": "a", "hostPath": "/a", "mountPath": "/a", "readOnly": True,
                                    "pathType": "DirectoryOrCreate"}]},
    "controllerManager": {"extraArgs": [{"name": "bind-address", "value": "0.0.0.0"}]},
    "scheduler": {"extraArgs": []},
    "etcd": {"local": {"dataDir": "/var/lib/etcd", "extraArgs": [{"name": "listen-metrics-urls", "value": "x"}]}},
    "featureGates": {"AnyGate": True},
}
JOIN = {
    "apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration",
    "nodeRegistration": {"name": "node"},
    "discovery": {"bootstrapToken": {"apiServerEndpoint": "1.2.3.4:6443", "token": "abcdef.0123456789abcdef",
                                     "caCertHashes": ["sha256:00"]}},
    "controlPlane": {"localAPIEndpoint": {"advertiseAddress": "1.2.3.5", "bindPort": 6443}, "certificateKey": "00"},
}
KUBELET = {
    "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
    "cgroupDriver": "systemd", "serverTLSBootstrap": True, "seccompDefault": True, "podPidsLimit": 4096,
    "failSwapOn": True, "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True}},
    "authorization": {"mode": "Webhook"}, "evictionHard": {"memory.available": "100Mi"},
}
PROXY = {
    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
    "mode": "ipvs", "metricsBindAddress": "0.0.0.0:10249", "ipvs": {"scheduler": "rr", "strictARP": True},
    "nftables": {"masqueradeAll": False}, "conntrack": {"maxPerCore": 0},
}


@pytest.mark.parametrize("doc", [INIT, CLUSTER, JOIN, KUBELET, PROXY], ids=lambda d: d["kind"])
def test_valid_documents_pass(doc):
    assert check_document(doc) == []


def _with(doc: dict, path: list, value) -> dict:
    out = copy.deepcopy(doc)
    cur = out
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = value
    return out


def _without(doc: dict, path: list, key: str, new_key: str) -> dict:
    out = copy.deepcopy(doc)
    cur = out
    for k in path:
        cur = cur[k]
    cur[new_key] = cur.pop(key)
    return out


BAD = [
    # (document, what the message must contain)
    (_without(CLUSTER, ["networking"], "podSubnet", "podSubnets"),
     "networking.podSubnets: unknown field; did you mean 'podSubnet'"),
    (_without(CLUSTER, [], "controlPlaneEndpoint", "controlplaneEndpoint"), "controlplaneEndpoint: unknown field"),
    (_with(CLUSTER, ["apiServer", "extraArgs"], [{"nam": "profiling", "value": "false"}]),
     "apiServer.extraArgs[0].nam: unknown field"),
    # v1beta3's map form of extraArgs is a list of {name, value} in v1beta4
    (_with(CLUSTER, ["apiServer", "extraArgs"], {"profiling": "false"}), "apiServer.extraArgs: expected a list"),
    (_with(CLUSTER, ["apiServer", "timeoutForControlPlane"], "4m"), "apiServer.timeoutForControlPlane: unknown field"),
    (_with(CLUSTER, ["etcd", "local", "listenMetricsUrls"], "x"), "etcd.local.listenMetricsUrls: unknown field"),
    (_with(INIT, ["nodeRegistration", "kubeletExtraArgs"], {"node-ip": "1.2.3.4"}),
     "nodeRegistration.kubeletExtraArgs: expected a list"),
    (_without(INIT, ["localAPIEndpoint"], "advertiseAddress", "advertiseAdress"),
     "localAPIEndpoint.advertiseAdress: unknown field; did you mean 'advertiseAddress'"),
    (_with(JOIN, ["discovery", "bootstrapToken", "caCertHash"], "sha256:00"),
     "discovery.bootstrapToken.caCertHash: unknown field"),
    (_without(KUBELET, [], "cgroupDriver", "cgroupdriver"), "cgroupdriver: unknown field; did you mean 'cgroupDriver'"),
    (_with(KUBELET, ["authentication", "anonymous", "enable"], False), "authentication.anonymous.enable: unknown field"),
    (_with(PROXY, ["ipvs", "schedular"], "rr"), "ipvs.schedular: unknown field; did you mean 'scheduler'"),
    (_without(PROXY, [], "metricsBindAddress", "metricsBindAdress"), "metricsBindAdress: unknown field"),
    (_with(PROXY, ["mode"], {"ipvs": True}), "mode: expected a scalar"),
]


@pytest.mark.parametrize("doc,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_unknown_or_misspelled_fields_fail(doc, message):
    problems = check_document(doc)
    assert any(message in p for p in problems), problems


def test_unknown_kind_or_api_version_fails():
    assert "unknown document" in check_document({**INIT, "apiVersion": "kubeadm.k8s.io/v1beta3"})[0]
    assert "unknown document" in check_document({**INIT, "kind": "InitConfig"})[0]


def test_a_kind_twice_fails():
    assert any("appears 2 times" in p for p in check_documents([INIT, INIT, CLUSTER]))


def test_problems_name_the_document():
    bad = _without(CLUSTER, ["networking"], "podSubnet", "podSubnets")
    assert check_documents([INIT, bad])[0].startswith("document 1: ClusterConfiguration: networking.podSubnets")
