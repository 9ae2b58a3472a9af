"""An offline bundle as a lab uses it: its manifest read, checked against the lab, and handed to the roles.

`labctl bundle build` writes the bundle; this module only reads `manifest.json` (the one owner of
what the bundle holds: every artifact's path, version, source and sha256) and turns it into the
`lab_bundle` variable of the generated group_vars: absolute paths of the binaries, the CNI plugins
and the image archives, and the Kubernetes and containerd versions the roles install.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.errors import UserError

MANIFEST = "manifest.json"
FORMAT = 1
FIELD = "kubernetes.bundle"


@dataclass(frozen=True)
class Bundle:
    root: Path
    kubernetes: str  # "v1.37.2"
    artifacts: tuple[dict[str, Any], ...]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [a for a in self.artifacts if a.get("kind") == kind]

    @property
    def binaries(self) -> dict[str, str]:
        return {a["name"]: str(self.root / a["path"]) for a in self.of_kind("binary")}

    @property
    def cni(self) -> list[str]:
        return [str(self.root / a["path"]) for a in self.of_kind("cni")]

    @property
    def images(self) -> dict[str, str]:
        """{upstream reference: absolute path of its OCI archive}"""
        return {a["ref"]: str(self.root / a["path"]) for a in self.of_kind("image")}

    def version_of(self, name: str) -> str:
        for a in self.artifacts:
            if a.get("name") == name:
                return str(a.get("version", ""))
        return ""


def bundle_dir(value: str) -> Path:
    return Path(value).expanduser()


def load(root: Path) -> Any:
    """The parsed manifest.json of the bundle directory `root`: the one reader of the file (labctl.bundle.build's
    build and check read it through here too). FileNotFoundError when there is none; OSError or
    ValueError when it cannot be read or is not JSON."""
    return json.loads((root / MANIFEST).read_text(encoding="utf-8"))


def read(value: str) -> Bundle:
    """Read the bundle at `value` (kubernetes.bundle); UserError naming the field when it is not one."""
    root = bundle_dir(value)
    path = root / MANIFEST
    if not root.is_dir():
        raise UserError(f"{FIELD}: {value!r} is not a directory (build one with `labctl bundle build`)")
    try:
        doc = load(root)
    except FileNotFoundError:
        raise UserError(f"{FIELD}: {value!r} holds no {MANIFEST}; is it a bundle from `labctl bundle build`?") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{FIELD}: cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("artifacts"), list):
        raise UserError(f"{FIELD}: {path} is not a format-{FORMAT} bundle manifest; rebuild it with `labctl bundle build`")
    bundle = Bundle(root.resolve(), str(doc.get("kubernetes", "")), tuple(doc["artifacts"]))
    missing = [a.get("path", "?") for a in bundle.artifacts if not (root / str(a.get("path", ""))).is_file()]
    if missing:
        raise UserError(f"{FIELD}: {value!r} lacks {len(missing)} file(s) its manifest lists "
                        f"({', '.join(missing[:5])}); rebuild it with `labctl bundle build`")
    return bundle


def problems(value: str, patch: str, needed: tuple[str, ...] = ()) -> list[str]:
    """What makes the bundle unusable for a lab of this Kubernetes patch release (messages without the field)."""
    try:
        bundle = read(value)
    except UserError as exc:
        return [str(exc).removeprefix(f"{FIELD}: ")]
    out: list[str] = []
    if bundle.kubernetes.removeprefix("v") != patch:
        minor = ".".join(patch.split(".")[:2])
        out.append(f"the bundle holds Kubernetes {bundle.kubernetes or '(none)'}, the lab installs {patch}; "
                   f"build one with `labctl bundle build --minor {minor}`")
    absent = [n for n in needed if n not in bundle.binaries]
    if absent:
        out.append(f"the bundle has no {', '.join(absent)}; rebuild it with `labctl bundle build`")
    return out


# the binaries the roles install from a bundle (containerd and kubernetes_packages)
ROLE_BINARIES = ("kubeadm", "kubelet", "kubectl", "crictl", "containerd", "containerd-shim-runc-v2", "ctr")


def as_vars(value: str | None) -> dict[str, Any]:
    """The `lab_bundle` group variable: {} without a bundle."""
    if not value:
        return {}
    bundle = read(value)
    return {
        "dir": str(bundle.root),
        "kubernetes": bundle.kubernetes.removeprefix("v"),
        "containerd": bundle.version_of("containerd").removeprefix("v"),
        "binaries": bundle.binaries,
        "cni": bundle.cni,
        "images": [{"ref": ref, "archive": path} for ref, path in bundle.images.items()],
    }
