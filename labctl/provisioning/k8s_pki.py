"""The discovery CA hash of `kubeadm join`.

`ca_cert_hash` is what `kubeadm join --discovery-token-ca-cert-hash` expects:
"sha256:" + hex SHA-256 of the DER-encoded SubjectPublicKeyInfo of the
cluster CA (/etc/kubernetes/pki/ca.crt). The join role computes the same
value with openssl on the control plane and checks both agree.

Run as `python -m labctl.provisioning.k8s_pki ca-cert-hash <ca.crt>` (used by the role).
"""

from __future__ import annotations

import hashlib
import sys


def ca_cert_hash(pem: bytes | str) -> str:
    """'sha256:<hex>' of the certificate's DER SubjectPublicKeyInfo."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = pem.encode() if isinstance(pem, str) else pem
    cert = x509.load_pem_x509_certificate(data)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "ca-cert-hash":
        with open(argv[1], "rb") as fh:
            print(ca_cert_hash(fh.read()))
        return 0
    print("usage: python -m labctl.provisioning.k8s_pki ca-cert-hash <ca.crt>", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
