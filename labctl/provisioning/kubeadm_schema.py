"""Field-set check of the documents in a kubeadm configuration file.

kubeadm documents are not Kubernetes API objects, so kubernetes-validate
cannot check them. This module holds the field names of the Go types (json
tags) that kubeadm decodes strictly, and reports every unknown or misspelled
field with its path. It checks names and shapes (mapping / list / scalar),
not values.

Written from the upstream types:
- kubeadm.k8s.io/v1beta4: cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go and
  cmd/kubeadm/app/apis/bootstraptoken/v1/types.go
- kubelet.config.k8s.io/v1beta1: staging/src/k8s.io/kubelet/config/v1beta1/types.go
- kubeproxy.config.k8s.io/v1alpha1: staging/src/k8s.io/kube-proxy/config/v1alpha1/types.go
"""

from __future__ import annotations

from typing import Any

# A spec is: SCALAR (any scalar), MAP (a free mapping, e.g. featureGates),
# ANY (not checked further), a dict (a struct: field -> spec), or a one-element
# list [spec] (a list of that spec).
SCALAR = "scalar"
MAP = "map"
ANY = "any"

TYPE_META = {"apiVersion": SCALAR, "kind": SCALAR}
ARG = {"name": SCALAR, "value": SCALAR}
ENV_VAR = {"name": SCALAR, "value": SCALAR, "valueFrom": ANY}
TAINT = {"key": SCALAR, "value": SCALAR, "effect": SCALAR, "timeAdded": SCALAR}
IMAGE_META = {"imageRepository": SCALAR, "imageTag": SCALAR}
HOST_PATH_MOUNT = {"name": SCALAR, "hostPath": SCALAR, "mountPath": SCALAR, "readOnly": SCALAR, "pathType": SCALAR}
CONTROL_PLANE_COMPONENT = {"extraArgs": [ARG], "extraVolumes": [HOST_PATH_MOUNT], "extraEnvs": [ENV_VAR]}
API_ENDPOINT = {"advertiseAddress": SCALAR, "bindPort": SCALAR}
PATCHES = {"directory": SCALAR}
TIMEOUTS = {k: SCALAR for k in ("controlPlaneComponentHealthCheck", "kubeletHealthCheck", "kubernetesAPICall",
                                "etcdAPICall", "tlsBootstrap", "discovery", "upgradeManifests")}
NODE_REGISTRATION = {
    "name": SCALAR, "criSocket": SCALAR, "taints": [TAINT], "kubeletExtraArgs": [ARG],
    "ignorePreflightErrors": [SCALAR], "imagePullPolicy": SCALAR, "imagePullSerial": SCALAR,
}
BOOTSTRAP_TOKEN = {"token": SCALAR, "description": SCALAR, "ttl": SCALAR, "expires": SCALAR,
                   "usages": [SCALAR], "groups": [SCALAR]}

INIT_CONFIGURATION = {
    **TYPE_META,
    "bootstrapTokens": [BOOTSTRAP_TOKEN], "dryRun": SCALAR, "nodeRegistration": NODE_REGISTRATION,
    "localAPIEndpoint": API_ENDPOINT, "certificateKey": SCALAR, "skipPhases": [SCALAR],
    "patches": PATCHES, "timeouts": TIMEOUTS,
}
CLUSTER_CONFIGURATION = {
    **TYPE_META,
    "etcd": {
        "local": {**IMAGE_META, "dataDir": SCALAR, "extraArgs": [ARG], "extraEnvs": [ENV_VAR],
                  "serverCertSANs": [SCALAR], "peerCertSANs": [SCALAR]},
        "external": {"endpoints": [SCALAR], "caFile": SCALAR, "certFile": SCALAR, "keyFile": SCALAR},
    },
    "networking": {"serviceSubnet": SCALAR, "podSubnet": SCALAR, "dnsDomain": SCALAR},
    "kubernetesVersion": SCALAR, "controlPlaneEndpoint": SCALAR,
    "apiServer": {**CONTROL_PLANE_COMPONENT, "certSANs": [SCALAR]},
    "controllerManager": CONTROL_PLANE_COMPONENT, "scheduler": CONTROL_PLANE_COMPONENT,
    "dns": {**IMAGE_META, "disabled": SCALAR}, "proxy": {"disabled": SCALAR},
    "certificatesDir": SCALAR, "imageRepository": SCALAR, "featureGates": MAP, "clusterName": SCALAR,
    "encryptionAlgorithm": SCALAR, "certificateValidityPeriod": SCALAR, "caCertificateValidityPeriod": SCALAR,
}
JOIN_CONFIGURATION = {
    **TYPE_META,
    "dryRun": SCALAR, "nodeRegistration": NODE_REGISTRATION, "caCertPath": SCALAR,
    "discovery": {
        "bootstrapToken": {"token": SCALAR, "apiServerEndpoint": SCALAR, "caCertHashes": [SCALAR],
                           "unsafeSkipCAVerification": SCALAR},
        "file": {"kubeConfigPath": SCALAR},
        "tlsBootstrapToken": SCALAR,
    },
    "controlPlane": {"localAPIEndpoint": API_ENDPOINT, "certificateKey": SCALAR},
    "skipPhases": [SCALAR], "patches": PATCHES, "timeouts": TIMEOUTS,
}

LOGGING = {"format": SCALAR, "flushFrequency": SCALAR, "verbosity": SCALAR, "vmodule": ANY, "options": ANY}
KUBELET_CONFIGURATION = {
    **TYPE_META,
    **{k: SCALAR for k in (
        "enableServer", "staticPodPath", "podLogsDir", "syncFrequency", "fileCheckFrequency", "httpCheckFrequency",
        "staticPodURL", "address", "port", "readOnlyPort", "tlsCertFile", "tlsPrivateKeyFile", "tlsMinVersion",
        "rotateCertificates", "serverTLSBootstrap", "registryPullQPS", "registryBurst",
        "imagePullCredentialsVerificationPolicy", "eventRecordQPS", "eventBurst", "enableDebuggingHandlers",
        "enableContentionProfiling", "healthzPort", "healthzBindAddress", "oomScoreAdj", "clusterDomain",
        "streamingConnectionIdleTimeout", "nodeStatusUpdateFrequency", "nodeStatusReportFrequency",
        "nodeLeaseDurationSeconds", "imageMinimumGCAge", "imageMaximumGCAge", "imageGCHighThresholdPercent",
        "imageGCLowThresholdPercent", "volumeStatsAggPeriod", "kubeletCgroups", "systemCgroups", "cgroupRoot",
        "cgroupsPerQOS", "cgroupDriver", "cpuManagerPolicy", "singleProcessOOMKill", "cpuManagerReconcilePeriod",
        "memoryManagerPolicy", "topologyManagerPolicy", "topologyManagerScope", "runtimeRequestTimeout",
        "hairpinMode", "maxPods", "podCIDR", "podPidsLimit", "resolvConf", "runOnce", "cpuCFSQuota",
        "cpuCFSQuotaPeriod", "nodeStatusMaxImages", "maxOpenFiles", "contentType", "kubeAPIQPS", "kubeAPIBurst",
        "serializeImagePulls", "maxParallelImagePulls", "evictionPressureTransitionPeriod",
        "evictionMaxPodGracePeriod", "mergeDefaultEvictionSettings", "podsPerCore", "enableControllerAttachDetach",
        "protectKernelDefaults", "makeIPTablesUtilChains", "iptablesMasqueradeBit", "iptablesDropBit", "failSwapOn",
        "containerLogMaxSize", "containerLogMaxFiles", "containerLogMaxWorkers", "containerLogMonitorInterval",
        "configMapAndSecretChangeDetectionStrategy", "reservedSystemCPUs", "showHiddenMetricsForVersion",
        "systemReservedCgroup", "kubeReservedCgroup", "volumePluginDir", "providerID", "kernelMemcgNotification",
        "enableSystemLogHandler", "enableSystemLogQuery", "shutdownGracePeriod", "shutdownGracePeriodCriticalPods",
        "enableProfilingHandler", "enableDebugFlagsHandler", "seccompDefault", "memoryThrottlingFactor",
        "registerNode", "localStorageCapacityIsolation", "containerRuntimeEndpoint", "imageServiceEndpoint",
        "failCgroupV1")},
    **{k: MAP for k in ("staticPodURLHeader", "qosReserved", "evictionHard", "evictionSoft", "evictionSoftGracePeriod",
                        "evictionMinimumReclaim", "featureGates", "systemReserved", "kubeReserved",
                        "cpuManagerPolicyOptions", "topologyManagerPolicyOptions")},
    **{k: [SCALAR] for k in ("tlsCipherSuites", "clusterDNS", "enforceNodeAllocatable", "allowedUnsafeSysctls",
                             "preloadedImagesVerificationAllowlist")},
    "authentication": {"x509": {"clientCAFile": SCALAR}, "webhook": {"enabled": SCALAR, "cacheTTL": SCALAR},
                       "anonymous": {"enabled": SCALAR}},
    "authorization": {"mode": SCALAR, "webhook": {"cacheAuthorizedTTL": SCALAR, "cacheUnauthorizedTTL": SCALAR}},
    "memorySwap": {"swapBehavior": SCALAR},
    "logging": LOGGING,
    "shutdownGracePeriodByPodPriority": [{"priority": SCALAR, "shutdownGracePeriodSeconds": SCALAR}],
    "crashLoopBackOff": {"maxContainerRestartPeriod": SCALAR},
    "reservedMemory": [{"numaNode": SCALAR, "limits": MAP}],
    "registerWithTaints": [TAINT],
    "tracing": {"endpoint": SCALAR, "samplingRatePerMillion": SCALAR},
    "userNamespaces": {"idsPerPod": SCALAR},
}

KUBE_PROXY_CONFIGURATION = {
    **TYPE_META,
    "featureGates": MAP,
    "clientConnection": {"kubeconfig": SCALAR, "acceptContentTypes": SCALAR, "contentType": SCALAR,
                         "qps": SCALAR, "burst": SCALAR},
    "logging": LOGGING,
    **{k: SCALAR for k in ("hostnameOverride", "bindAddress", "healthzBindAddress", "metricsBindAddress",
                           "bindAddressHardFail", "enableProfiling", "showHiddenMetricsForVersion", "mode",
                           "detectLocalMode", "clusterCIDR", "oomScoreAdj", "configSyncPeriod", "portRange",
                           "windowsRunAsService")},
    "iptables": {"masqueradeBit": SCALAR, "masqueradeAll": SCALAR, "localhostNodePorts": SCALAR,
                 "syncPeriod": SCALAR, "minSyncPeriod": SCALAR},
    "ipvs": {"syncPeriod": SCALAR, "minSyncPeriod": SCALAR, "scheduler": SCALAR, "excludeCIDRs": [SCALAR],
             "strictARP": SCALAR, "tcpTimeout": SCALAR, "tcpFinTimeout": SCALAR, "udpTimeout": SCALAR},
    "nftables": {"masqueradeBit": SCALAR, "masqueradeAll": SCALAR, "syncPeriod": SCALAR, "minSyncPeriod": SCALAR},
    "winkernel": {"networkName": SCALAR, "sourceVip": SCALAR, "enableDSR": SCALAR, "rootHnsEndpointName": SCALAR,
                  "forwardHealthCheckVip": SCALAR},
    "detectLocal": {"bridgeInterface": SCALAR, "interfaceNamePrefix": SCALAR},
    "nodePortAddresses": [SCALAR],
    "conntrack": {"maxPerCore": SCALAR, "min": SCALAR, "tcpEstablishedTimeout": SCALAR,
                  "tcpCloseWaitTimeout": SCALAR, "tcpBeLiberal": SCALAR, "udpTimeout": SCALAR,
                  "udpStreamTimeout": SCALAR},
}

KUBEADM_API = "kubeadm.k8s.io/v1beta4"
SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    (KUBEADM_API, "InitConfiguration"): INIT_CONFIGURATION,
    (KUBEADM_API, "ClusterConfiguration"): CLUSTER_CONFIGURATION,
    (KUBEADM_API, "JoinConfiguration"): JOIN_CONFIGURATION,
    ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"): KUBELET_CONFIGURATION,
    ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"): KUBE_PROXY_CONFIGURATION,
}


def _close(key: str, allowed: list[str]) -> str:
    import difflib

    match = difflib.get_close_matches(key, allowed, n=1, cutoff=0.7)
    return f"; did you mean {match[0]!r}?" if match else ""


def _check(value: Any, spec: Any, path: str, out: list[str]) -> None:
    if spec == ANY:
        return
    if spec == SCALAR:
        if isinstance(value, (dict, list)):
            out.append(f"{path}: expected a scalar, found a {type(value).__name__}")
        return
    if spec == MAP:
        if not isinstance(value, dict):
            out.append(f"{path}: expected a mapping, found {type(value).__name__}")
        return
    if isinstance(spec, list):
        if not isinstance(value, list):
            out.append(f"{path}: expected a list, found {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check(item, spec[0], f"{path}[{i}]", out)
        return
    if not isinstance(value, dict):
        out.append(f"{path}: expected a mapping, found {type(value).__name__}")
        return
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in spec:
            out.append(f"{where}: unknown field{_close(str(key), sorted(spec))}")
            continue
        if item is None:
            continue
        _check(item, spec[key], where, out)


def check_document(doc: Any) -> list[str]:
    """Problems in one kubeadm/kubelet/kube-proxy document; [] when every field is known."""
    if not isinstance(doc, dict):
        return [f"expected a mapping, found {type(doc).__name__}"]
    key = (doc.get("apiVersion"), doc.get("kind"))
    spec = SCHEMAS.get(key)  # type: ignore[arg-type]
    if spec is None:
        known = ", ".join(f"{a} {k}" for a, k in SCHEMAS)
        return [f"unknown document {key[0]} {key[1]} (known: {known})"]
    out: list[str] = []
    _check(doc, spec, "", out)
    return [f"{key[1]}: {p}" for p in out]


def check_documents(docs: list[Any]) -> list[str]:
    """Problems in every document of a multi-document kubeadm config file."""
    out: list[str] = []
    kinds = [d.get("kind") for d in docs if isinstance(d, dict)]
    for kind in set(kinds):
        if kinds.count(kind) > 1:
            out.append(f"{kind} appears {kinds.count(kind)} times; kubeadm takes one")
    for i, doc in enumerate(docs):
        out += [f"document {i}: {p}" for p in check_document(doc)]
    return out
