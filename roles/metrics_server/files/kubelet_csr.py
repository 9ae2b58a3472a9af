#!/usr/bin/env python3
"""Decide which kubelet serving CSRs of a labctl lab to approve, deny or leave alone.

The one implementation of the decision: the metrics_server role copies this
file to the control-plane node and runs it there; labctl.csr loads it for the
unit tests and the CLI. Standard library only (the nodes have python3 and
nothing else we may rely on).

Why a small DER reader instead of `openssl req -text` or python3-cryptography:
`openssl req -text` is a human format whose layout changes between OpenSSL
releases (1.1, 3.0 and 3.x print SANs differently), and python3-cryptography
would be one more package on every node of every distribution. A PKCS#10
request is a short DER structure; reading the subject and the
subjectAltName extension takes ~60 lines and fails closed (anything it cannot
read is denied).

Usage on the node:
    kubectl get csr -o json | python3 kubelet_csr.py --nodes '[{"name": "cp1", "ip": "10.0.0.10"}]'
prints JSON: {"decisions": [{"name", "action", "reason"}], "missing": [node names
without any kubelet-serving CSR]}.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import sys

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", required=True, help='JSON list of {"name", "ip"}: the lab\'s Kubernetes nodes')
    args = p.parse_args(argv)
    nodes = json.loads(args.nodes)
    print(json.dumps(decide_all(json.load(sys.stdin), nodes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
