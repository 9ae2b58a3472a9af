"""Kubernetes PKI helpers: the discovery CA hash and bootstrap tokens.

`ca_cert_hash` is what `kubeadm join --discovery-token-ca-cert-hash` expects:
"sha256:" + hex SHA-256 of the DER-encoded SubjectPublicKeyInfo of the
cluster CA (/etc/kubernetes/pki/ca.crt). The join role computes the same
value with openssl on the control plane and checks both agree.

Run as `python -m labctl.k8s_pki ca-cert-hash <ca.crt>` (used by the role).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import sys

# The bootstrap token format (k8s.io/cluster-bootstrap/token/api): "<id>.<secret>".
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
# Tokens labctl creates never live longer than this (seconds).
MAX_TOKEN_TTL_SECONDS = 3600
_ALPHABET = string.ascii_lowercase + string.digits


def ca_cert_hash(pem: bytes | str) -> str:
    """'sha256:<hex>' of the certificate's DER SubjectPublicKeyInfo."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = pem.encode() if isinstance(pem, str) else pem
    cert = x509.load_pem_x509_certificate(data)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def generate_token() -> str:
    """A fresh bootstrap token `[a-z0-9]{6}.[a-z0-9]{16}` from a CSPRNG."""
    part = lambda n: "".join(secrets.choice(_ALPHABET) for _ in range(n))  # noqa: E731
    return f"{part(6)}.{part(16)}"


def is_valid_token(token: str) -> bool:
    return bool(TOKEN_RE.fullmatch(token))


def parse_ttl(ttl: str) -> int:
    """A Go duration as kubeadm takes it ('1h', '30m', '1h30m', '45s') -> seconds."""
    parts = re.findall(r"(\d+)([hms])", ttl)
    if not parts or "".join(n + u for n, u in parts) != ttl:
        raise ValueError(f"not a duration like 1h or 30m: {ttl!r}")
    mult = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * mult[u] for n, u in parts)


def check_ttl(ttl: str) -> int:
    """Seconds of a token TTL, refusing 0 (never expires) and anything over an hour."""
    seconds = parse_ttl(ttl)
    if seconds == 0:
        raise ValueError("a token TTL of 0 never expires; labctl uses at most 1h")
    if seconds > MAX_TOKEN_TTL_SECONDS:
        raise ValueError(f"token TTL {ttl} is longer than 1h")
    return seconds


def redact(text: str, token: str) -> str:
    """Text with the token (and its secret half) replaced, for error messages."""
    if not token:
        return text
    out = text.replace(token, "<token>")
    secret = token.split(".", 1)[-1]
    return out.replace(secret, "<token-secret>") if len(secret) >= 8 else out


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "ca-cert-hash":
        with open(argv[1], "rb") as fh:
            print(ca_cert_hash(fh.read()))
        return 0
    print("usage: python -m labctl.k8s_pki ca-cert-hash <ca.crt>", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
