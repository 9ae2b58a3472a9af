#!/usr/bin/env python3
"""Decide which kubelet serving CSRs of a labctl lab to approve, deny or leave alone.

The one implementation of the decision: the metrics_server role copies this
file to the control-plane node and runs it there; labctl.provisioning.csr loads it for the
unit tests and the CLI. Standard library only (the nodes have python3 and
nothing else we may rely on).

Why a small DER reader instead of `openssl req -text` or python3-cryptography:
`openssl req -text` is a human format whose layout changes between OpenSSL
releases (1.1, 3.0 and 3.x print SANs differently), and python3-cryptography
would be one more package on every node of every distribution. A PKCS#10
request is a short DER structure; reading the subject and the
subjectAltName extension takes ~60 lines and fails closed (anything it cannot
read is denied).

Usage on the node (the join and addons phases):
    kubectl get csr -o json | python3 kubelet_csr.py --nodes '[{"name": "cp1", "ip": "10.0.0.10"}]'
prints JSON: {"decisions": [{"name", "action", "reason"}], "missing": [node names
without any kubelet-serving CSR]}.

Usage in a pod (the in-cluster approver, roles/csr_approver; serving certificates rotate long
after `labctl provision`):
    python3 kubelet_csr.py --serve --nodes-file /etc/labctl-csr-approver/nodes.json [--interval 30]
lists the kubelet-serving CSRs through the API with the pod's service-account token and CA,
approves or denies each undecided one with the same decide(), then lists again every
--interval seconds (backing off after errors); one line per decision on stdout.
"""

from __future__ import annotations

import argparse
import base64
import copy
import http.client
import ipaddress
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone

SIGNER = "kubernetes.io/kubelet-serving"
NODE_GROUP = "system:nodes"
ALLOWED_USAGES = {"digital signature", "key encipherment", "server auth"}

OID_CN = "2.5.4.3"
OID_O = "2.5.4.10"
OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
OID_SAN = "2.5.29.17"


class CsrError(ValueError):
    """The request cannot be read."""


# -- a minimal DER reader -----------------------------------------------------


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the element at pos."""
    if pos + 2 > len(data):
        raise CsrError("truncated DER")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise CsrError("multi-byte DER tags are not used in a CSR")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise CsrError("bad DER length")
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise CsrError("DER element runs past the end")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    pos = start
    while pos < end:
        tag, vs, ve = _tlv(data, pos)
        out.append((tag, vs, ve))
        pos = ve
    if pos != end:
        raise CsrError("DER elements do not fill their container")
    return out


def _oid(raw: bytes) -> str:
    if not raw:
        raise CsrError("empty OID")
    parts = [raw[0] // 40, raw[0] % 40]
    value = 0
    for b in raw[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def parse_request(pem: str) -> dict:
    """Subject CN/O and the SANs of a PEM certificate request.

    Returns {"cn": [..], "o": [..], "dns": [..], "ips": [..], "other_sans": int}.
    """
    lines = [ln.strip() for ln in pem.strip().splitlines()]
    if not lines or lines[0] != "-----BEGIN CERTIFICATE REQUEST-----" or lines[-1] != "-----END CERTIFICATE REQUEST-----":
        raise CsrError("not a PEM CERTIFICATE REQUEST")
    try:
        der = base64.b64decode("".join(lines[1:-1]), validate=True)
    except ValueError as exc:
        raise CsrError(f"bad base64: {exc}") from None
    tag, vs, ve = _tlv(der, 0)
    if tag != 0x30 or ve != len(der):
        raise CsrError("not a DER SEQUENCE")
    top = _children(der, vs, ve)
    if len(top) != 3 or top[0][0] != 0x30:
        raise CsrError("not a PKCS#10 CertificationRequest")
    info = _children(der, top[0][1], top[0][2])
    if len(info) < 3 or info[0][0] != 0x02 or info[1][0] != 0x30:
        raise CsrError("bad CertificationRequestInfo")
    out: dict = {"cn": [], "o": [], "dns": [], "ips": [], "other_sans": 0}
    # subject: SEQUENCE OF SET OF SEQUENCE {OID, value}
    for rdn_tag, rs, re_ in _children(der, info[1][1], info[1][2]):
        if rdn_tag != 0x31:
            raise CsrError("bad RDN")
        for atv_tag, a_s, a_e in _children(der, rs, re_):
            parts = _children(der, a_s, a_e)
            if atv_tag != 0x30 or len(parts) != 2 or parts[0][0] != 0x06:
                raise CsrError("bad subject attribute")
            oid = _oid(der[parts[0][1]:parts[0][2]])
            value = der[parts[1][1]:parts[1][2]].decode("utf-8", "replace")
            if oid == OID_CN:
                out["cn"].append(value)
            elif oid == OID_O:
                out["o"].append(value)
    # attributes [0] IMPLICIT SET OF Attribute
    for a_tag, a_s, a_e in info[3:]:
        if a_tag != 0xA0:
            continue
        for attr_tag, ts, te in _children(der, a_s, a_e):
            attr = _children(der, ts, te)
            if attr_tag != 0x30 or len(attr) != 2 or attr[0][0] != 0x06:
                raise CsrError("bad attribute")
            if _oid(der[attr[0][1]:attr[0][2]]) != OID_EXTENSION_REQUEST:
                continue
            for _exts_tag, es, ee in _children(der, attr[1][1], attr[1][2]):
                for ext_tag, xs, xe in _children(der, es, ee):
                    ext = _children(der, xs, xe)
                    if ext_tag != 0x30 or ext[0][0] != 0x06 or ext[-1][0] != 0x04:
                        raise CsrError("bad extension")
                    if _oid(der[ext[0][1]:ext[0][2]]) != OID_SAN:
                        continue
                    g_tag, gs, ge = _tlv(der, ext[-1][1])
                    if g_tag != 0x30:
                        raise CsrError("bad subjectAltName")
                    for n_tag, ns, ne in _children(der, gs, ge):
                        raw = der[ns:ne]
                        if n_tag == 0x82:  # dNSName
                            out["dns"].append(raw.decode("ascii", "replace"))
                        elif n_tag == 0x87:  # iPAddress
                            if len(raw) not in (4, 16):
                                raise CsrError("bad IP address SAN")
                            out["ips"].append(str(ipaddress.ip_address(raw)))
                        else:  # email, URI, directoryName, otherName ...
                            out["other_sans"] += 1
    return out


# -- the decision --------------------------------------------------------------


def decide(csr: dict, nodes: list[dict]) -> tuple[str, str]:
    """('approve' | 'deny' | 'ignore', reason) for one CertificateSigningRequest object.

    nodes: the lab's Kubernetes nodes as [{"name": ..., "ip": ...}].
    """
    spec = csr.get("spec") or {}
    name = (csr.get("metadata") or {}).get("name", "?")
    signer = spec.get("signerName", "")
    if signer != SIGNER:
        return "ignore", f"{name}: signer {signer or '(none)'} is not {SIGNER}; not ours to decide"
    conditions = (csr.get("status") or {}).get("conditions") or []
    if conditions:
        return "ignore", f"{name}: already {conditions[-1].get('type', 'decided')}"
    username = spec.get("username", "")
    by_name = {n["name"]: str(n["ip"]) for n in nodes}
    if not username.startswith("system:node:"):
        return "deny", f"{name}: requested by {username!r}, not a node (system:node:<name>)"
    node = username[len("system:node:"):]
    if node not in by_name:
        return "deny", f"{name}: node {node!r} is not a node of this lab ({', '.join(sorted(by_name))})"
    if NODE_GROUP not in (spec.get("groups") or []):
        return "deny", f"{name}: requester groups {spec.get('groups')} do not include {NODE_GROUP}"
    usages = set(spec.get("usages") or [])
    if "server auth" not in usages or not usages <= ALLOWED_USAGES:
        return "deny", f"{name}: usages {sorted(usages)} are not a serving certificate's ({sorted(ALLOWED_USAGES)})"
    try:
        pem = base64.b64decode(spec.get("request", ""), validate=True).decode("ascii")
        req = parse_request(pem)
    except (CsrError, ValueError) as exc:
        return "deny", f"{name}: the request cannot be read ({exc})"
    if req["cn"] != [username] or req["o"] != [NODE_GROUP]:
        return "deny", f"{name}: subject CN={req['cn']} O={req['o']} does not match {username} / {NODE_GROUP}"
    if req["other_sans"]:
        return "deny", f"{name}: {req['other_sans']} SAN(s) other than DNS names and IP addresses"
    if not req["dns"] and not req["ips"]:
        return "deny", f"{name}: no subject alternative names"
    bad_dns = [d for d in req["dns"] if d != node]
    if bad_dns:
        return "deny", f"{name}: DNS SAN(s) {bad_dns} are not the node name {node!r}"
    bad_ips = [ip for ip in req["ips"] if ip != by_name[node]]
    if bad_ips:
        return "deny", f"{name}: IP SAN(s) {bad_ips} are not {node}'s lab IP {by_name[node]}"
    return "approve", f"{name}: {node} serving certificate for {req['dns'] + req['ips']}"


def decide_all(csr_list: dict, nodes: list[dict]) -> dict:
    """Decisions for a `kubectl get csr -o json` list, and the nodes without a serving CSR."""
    decisions = []
    requested: set[str] = set()
    for item in csr_list.get("items") or []:
        action, reason = decide(item, nodes)
        spec = item.get("spec") or {}
        if spec.get("signerName") == SIGNER and spec.get("username", "").startswith("system:node:"):
            requested.add(spec["username"][len("system:node:"):])
        decisions.append({"name": (item.get("metadata") or {}).get("name", "?"), "action": action, "reason": reason})
    missing = sorted(n["name"] for n in nodes if n["name"] not in requested)
    return {"decisions": decisions, "missing": missing}


# -- the in-cluster approver (--serve) ---------------------------------------------
# Everything above decides; what follows only lists, applies decisions and waits. The pod reaches
# the API server with its service-account token and CA; its RBAC allows exactly: get/list/watch
# CSRs, update certificatesigningrequests/approval, approve for the kubelet-serving signer.

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CSR_API = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
# decide()'s action -> (condition type, condition reason)
CONDITIONS = {"approve": ("Approved", "LabctlApproved"), "deny": ("Denied", "LabctlDenied")}
ERROR_DELAY = 5  # seconds before the first retry after an error; doubles per failure up to max_backoff


class ApiError(Exception):
    """The API server answered with an error status (code), or could not be reached (code 0)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def read_nodes(text: str) -> list[dict]:
    """The lab's Kubernetes nodes from JSON [{"name", "ip"}]; ValueError when it is not that."""
    nodes = json.loads(text)
    if not isinstance(nodes, list) or not nodes:
        raise ValueError("nodes: expected a non-empty JSON list of {\"name\", \"ip\"}")
    for n in nodes:
        if not isinstance(n, dict) or not isinstance(n.get("name"), str) or not n["name"]:
            raise ValueError(f"nodes: {n!r} has no name")
        ipaddress.ip_address(str(n.get("ip")))  # ValueError names the bad address
    return [{"name": n["name"], "ip": str(n["ip"])} for n in nodes]


def plan(csr_list: dict, nodes: list[dict]) -> list[tuple[dict, str, str]]:
    """The CSRs one pass acts on: (csr, 'approve' | 'deny', reason).

    Decided CSRs (an Approved, Denied or Failed condition, whoever set it: this pod, the provision
    run's `kubectl certificate approve`, an admin) and other signers' are left alone, so the
    in-cluster approver and `labctl provision` never undo each other.
    """
    out = []
    for item in csr_list.get("items") or []:
        action, reason = decide(item, nodes)
        if action in CONDITIONS:
            out.append((item, action, reason))
    return out


def with_condition(csr: dict, action: str, reason: str, now: str) -> dict:
    """The object to PUT to .../certificatesigningrequests/<name>/approval: csr plus its decision.

    It keeps metadata.resourceVersion, so a CSR changed since it was listed is refused (409).
    """
    ctype, creason = CONDITIONS[action]
    out = copy.deepcopy(csr)
    status = out.setdefault("status", {})
    status["conditions"] = list(status.get("conditions") or []) + [{
        "type": ctype, "status": "True", "reason": creason,
        "message": f"labctl kubelet-serving approver: {reason}"[:1024],
        "lastUpdateTime": now,
    }]
    return out


def backoff(failures: int, interval: float, max_backoff: float) -> float:
    """Seconds until the next pass: the interval after a good pass, 5, 10, 20 ... up to max_backoff after errors."""
    if failures <= 0:
        return interval
    return min(max_backoff, ERROR_DELAY * 2 ** min(failures - 1, 16))


class Api:
    """The few API calls the approver makes, over HTTPS with the pod's service-account token and CA."""

    def __init__(self, server: str, sa_dir: str = SA_DIR, timeout: float = 30):
        self.server = server.rstrip("/")
        self.token_file = os.path.join(sa_dir, "token")
        self.timeout = timeout
        ctx = ssl.create_default_context(cafile=os.path.join(sa_dir, "ca.crt"))
        # straight to the API server: no proxy from the environment
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))

    @classmethod
    def in_cluster(cls, sa_dir: str = SA_DIR) -> Api:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ApiError(0, "KUBERNETES_SERVICE_HOST is not set: not running in a pod")
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        return cls(f"https://{host}:{port}", sa_dir)

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        with open(self.token_file, encoding="ascii") as fh:  # read each time: the kubelet rotates it
            token = fh.read().strip()
        req = urllib.request.Request(
            self.server + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                     "Content-Type": "application/json", "User-Agent": "labctl-csr-approver"})
        try:
            with self.opener.open(req, timeout=self.timeout) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read() or b"{}").get("message", "")
            except ValueError:
                detail = ""
            raise ApiError(exc.code, f"{method} {path}: HTTP {exc.code} {detail}".rstrip()) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(0, f"{method} {path}: {exc}") from None

    def list_csrs(self) -> dict:
        selector = urllib.parse.quote(f"spec.signerName={SIGNER}")
        return self.request("GET", f"{CSR_API}?fieldSelector={selector}")

    def update_approval(self, csr: dict) -> dict:
        name = urllib.parse.quote(csr["metadata"]["name"], safe="")
        return self.request("PUT", f"{CSR_API}/{name}/approval", csr)


def run_pass(api, nodes: list[dict], log=print) -> dict:
    """List, decide, apply: {'approve': n, 'deny': n, 'skipped': n}. ApiError when the list fails.

    A CSR that changed or vanished since the list (409, 404) is skipped: the next pass sees it as it is.
    """
    counts = {"approve": 0, "deny": 0, "skipped": 0}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: UP017 -- runs on the nodes' python3, 3.9 on Rocky 9 (datetime.UTC is 3.11+)
    for item, action, reason in plan(api.list_csrs(), nodes):
        try:
            api.update_approval(with_condition(item, action, reason, now))
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise
            counts["skipped"] += 1
            log(f"skip {reason.split(':', 1)[0]}: {exc}")
            continue
        counts[action] += 1
        log(f"{action} {reason}")
    return counts


def serve(api, nodes: list[dict], interval: float = 30, max_backoff: float = 300, log=print,
          sleep=time.sleep, passes: int | None = None) -> int:
    """Run passes every `interval` seconds (forever, or `passes` times); errors are logged and retried."""
    log(f"labctl kubelet-serving approver: {len(nodes)} node(s) "
        f"{', '.join(n['name'] + '=' + n['ip'] for n in nodes)}; a pass every {interval:g}s")
    failures = 0
    done = 0
    while passes is None or done < passes:
        try:
            run_pass(api, nodes, log)
            failures = 0
        except ApiError as exc:
            failures += 1
            log(f"error (failure {failures} in a row): {exc}; next pass in {backoff(failures, interval, max_backoff):g}s")
        done += 1
        if passes is None or done < passes:
            sleep(backoff(failures, interval, max_backoff))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", help='JSON list of {"name", "ip"}: the lab\'s Kubernetes nodes')
    p.add_argument("--nodes-file", help="a file holding that JSON list (the approver's ConfigMap)")
    p.add_argument("--serve", action="store_true",
                   help="run in a pod: decide on the CSRs through the API, again every --interval seconds")
    p.add_argument("--interval", type=float, default=30, help="seconds between passes (--serve; default 30)")
    p.add_argument("--max-backoff", type=float, default=300, help="longest wait after errors (--serve; default 300)")
    args = p.parse_args(argv)
    if (args.nodes is None) == (args.nodes_file is None):
        p.error("give exactly one of --nodes and --nodes-file")
    if args.nodes_file is not None:
        with open(args.nodes_file, encoding="utf-8") as fh:
            text = fh.read()
    else:
        text = args.nodes
    nodes = read_nodes(text)
    if not args.serve:
        print(json.dumps(decide_all(json.load(sys.stdin), nodes)))
        return 0
    if not 1 <= args.interval <= 3600 or not args.interval <= args.max_backoff <= 3600:
        p.error("--interval must be 1-3600 s and --max-backoff between --interval and 3600 s")

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        api = Api.in_cluster()
    except ApiError as exc:
        print(f"kubelet_csr.py --serve: {exc}", file=sys.stderr)
        return 2
    return serve(api, nodes, args.interval, args.max_backoff, log)


if __name__ == "__main__":
    sys.exit(main())
