"""`labctl bundle build`: an offline bundle of every binary and image a lab needs, built from source.

Everything comes from labctl/model/pins.yml: Go modules at pinned versions, fetched through the Go module
proxy and built with the ordinary Go toolchain (static, linux/amd64, -trimpath, versions stamped as
the projects' release builds do); pause compiled with gcc -static; Debian packages (busybox-static,
the packet-filter tools of kube-proxy's and flannel's base) from Debian's mirror. Images are
assembled from those binaries with umoci and written as OCI archives with skopeo.

The layout (a contract with the roles that install from a bundle; docs/bundle.md):

    <bundle>/manifest.json   format, name, digest, kubernetes, pins, artifacts[{path, kind, name, version,
                             source, sha256[, ref]}]
    <bundle>/bin/            kubeadm kubelet kubectl crictl containerd containerd-shim-runc-v2 ctr runc helm
    <bundle>/cni/            bridge host-local loopback portmap flannel
    <bundle>/images/<name>.tar   one OCI archive per image, its index naming the upstream ref

A bundle lives in ~/.cache/labctl/bundles/<digest> (digest: sha256 of the pins it builds and RECIPE),
so building it again is a no-op; `current-<minor>` points at the newest one per minor. Go's own
caches (build cache, module cache) stay where Go keeps them, so a rebuild after a pin change is
incremental.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.bundle.manifest import FORMAT, MANIFEST
from labctl.bundle.manifest import load as load_manifest
from labctl.errors import LabctlError, UserError

# Bump when the way a bundle is built changes (flags, layout, image contents): a new digest.
RECIPE = 3
NAME = "labctl-bundle"
GO_JOBS = "2"
PROXY_TIMEOUT = 30
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# a fixed time for what the bundle writes itself (layers, image configs): same pins, same bytes
EPOCH = 0
CREATED = "1970-01-01T00:00:00Z"
K8S_SERVER = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")


class BundleError(LabctlError):
    """A bundle build failed (a module did not build, a tool is missing): exit 1."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "labctl"


def bundles_dir() -> Path:
    return cache_root() / "bundles"


# --------------------------------------------------------------------------- pins -> what to build


def bundle_pins(pins: dict[str, Any], minor: str) -> dict[str, Any]:
    """The pins one bundle builds (its digest is computed from these), all strings."""
    if minor not in pins["kubernetes"]:
        known = ", ".join(sorted(pins["kubernetes"], key=lambda m: tuple(int(x) for x in m.split("."))))
        raise UserError(f"--minor {minor}: not a pinned Kubernetes minor (pinned: {known})")
    rel = {k: str(v) for k, v in pins["kubernetes"][minor].items()}
    b = pins["bundle"]

    def comp(key: str, **extra: str) -> dict[str, str]:
        return {**{k: str(v) for k, v in b[key].items()}, **extra}

    return {
        "kubernetes": {"minor": minor, "module": "k8s.io/kubernetes", "version": "v" + rel["patch"],
                       "pause": rel["pause"], "coredns": rel["coredns"], "etcd": rel["etcd"]},
        "containerd": comp("containerd"),
        "runc": comp("runc"),
        "cni_plugins": comp("cni_plugins"),
        "flannel_cni_plugin": comp("flannel_cni_plugin", ref_tag=str(pins["addons"]["flannel_cni_plugin"])),
        "flannel": comp("flannel"),
        "cri_tools": comp("cri_tools"),
        "etcd": comp("etcd", version="v" + rel["etcd"].rsplit("-", 1)[0], tag=rel["etcd"]),
        "coredns": comp("coredns", version=rel["coredns"]),
        "helm": comp("helm"),
        "metrics_server": comp("metrics_server"),
        "agnhost": comp("agnhost"),
        "busybox": comp("busybox"),
        "debian_base": {"suite": str(b["debian_base"]["suite"]),
                        "packages": [str(p) for p in b["debian_base"]["packages"]]},
        "csr_approver": {"version": str(b["csr_approver"]["version"]), "suite": str(b["csr_approver"]["suite"]),
                         "packages": [str(p) for p in b["csr_approver"]["packages"]]},
    }


def staging_version(version: str) -> str:
    """k8s.io/kubernetes' staging modules (k8s.io/api & co.) are published as v0.<minor>.<patch>."""
    _major, minor, patch = version.lstrip("v").split(".")
    return f"v0.{minor}.{patch}"


def digest(bpins: dict[str, Any]) -> str:
    """sha256 of the pins a bundle builds and the recipe that builds them."""
    blob = json.dumps({"recipe": RECIPE, "pins": bpins}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def image_refs(bpins: dict[str, Any]) -> dict[str, str]:
    """image name (the archive's file name) -> the upstream ref labctl/model/images.py lists for it."""
    from labctl.model import versions
    from labctl.verify.workloads import WORKLOAD_IMAGES

    k = bpins["kubernetes"]
    refs = {c: f"registry.k8s.io/{c}:{k['version']}" for c in K8S_SERVER}
    refs["pause"] = f"registry.k8s.io/pause:{k['pause']}"
    refs["etcd"] = f"registry.k8s.io/etcd:{k['etcd']}"
    refs["coredns"] = f"registry.k8s.io/coredns/coredns:{k['coredns']}"
    flannel_ref, cni_ref = versions.ADDONS["flannel"].images
    refs["flannel"] = flannel_ref
    refs["flannel-cni-plugin"] = cni_ref
    refs["metrics-server"] = f"registry.k8s.io/metrics-server/metrics-server:{bpins['metrics_server']['version']}"
    refs["busybox"] = WORKLOAD_IMAGES["busybox"]
    refs["agnhost"] = WORKLOAD_IMAGES["agnhost"]
    # labctl's own image (roles/csr_approver); labctl/model/images.py names it the same way
    refs["csr-approver"] = f"docker.io/labctl/csr-approver:{bpins['csr_approver']['version']}"
    return refs


# --------------------------------------------------------------------------- manifest


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_manifest(bpins: dict[str, Any], artifacts: list[dict[str, Any]], missing: list[dict[str, str]]) -> dict:
    return {
        "format": FORMAT,
        "name": NAME,
        "digest": digest(bpins),
        "recipe": RECIPE,
        "kubernetes": bpins["kubernetes"]["version"],
        "pins": bpins,
        "artifacts": sorted(artifacts, key=lambda a: a["path"]),
        "missing": missing,
    }


def read_manifest(bundle: Path) -> dict | None:
    """The bundle's manifest (labctl.bundle.manifest.load), None when it is absent or unreadable."""
    try:
        return load_manifest(bundle)
    except (OSError, ValueError):
        return None


def check_bundle(bundle: Path) -> list[str]:
    """Problems with a bundle on disk: missing files, sha256 mismatches (empty when it is whole)."""
    manifest = read_manifest(bundle)
    if manifest is None:
        return [f"{bundle}/{MANIFEST} missing or unreadable"]
    problems = []
    for a in manifest["artifacts"]:
        path = bundle / a["path"]
        if not path.is_file():
            problems.append(f"{a['path']}: missing")
        elif sha256_file(path) != a["sha256"]:
            problems.append(f"{a['path']}: sha256 differs from the manifest")
    return problems


def up_to_date(bundle: Path, want_digest: str) -> bool:
    manifest = read_manifest(bundle)
    return bool(manifest) and manifest.get("digest") == want_digest and manifest.get("format") == FORMAT


def link_current(root: Path, minor: str, target: Path) -> Path:
    """current-<minor> -> <digest>, replaced atomically."""
    link = root / f"current-{minor}"
    tmp = root / f".current-{minor}.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target.name if target.parent == root else target)
    tmp.replace(link)
    return link


# --------------------------------------------------------------------------- layers (deterministic tars)


@dataclass
class Entry:
    path: str  # inside the image, without a leading /
    src: Path | None = None  # file contents
    mode: int = 0o755
    link: str = ""  # symlink target
    is_dir: bool = False


def write_layer(out: Path, entries: Iterable[Entry]) -> None:
    """An uncompressed layer tar: parent directories added, root-owned, mtime EPOCH, sorted."""
    wanted: dict[str, Entry] = {}
    for e in entries:
        parts = e.path.strip("/").split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            wanted.setdefault(d, Entry(d, is_dir=True))
        wanted[e.path.strip("/")] = e
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(wanted):
            e = wanted[path]
            info = tarfile.TarInfo(path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "root", "root"
            if e.is_dir:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif e.link:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, e.link, 0o777
                tar.addfile(info)
            else:
                assert e.src is not None
                data = e.src.read_bytes()
                info.size, info.mode = len(data), e.mode
                tar.addfile(info, io.BytesIO(data))


# --------------------------------------------------------------------------- the builder


@dataclass
class Image:
    name: str
    ref: str
    version: str
    source: str
    layers: list[Path]
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


class Builder:
    """Builds one bundle into `stage`; Go outputs that are not bundle files go to `work`."""

    def __init__(self, bpins: dict[str, Any], stage: Path, work: Path, say: Callable[[str], None] = print):
        self.p = bpins
        self.stage = stage
        self.work = work
        self.say = say
        self.artifacts: list[dict[str, Any]] = []
        self.missing: list[dict[str, str]] = []
        self.refs = image_refs(bpins)
        self.t0 = time.monotonic()
        self.go = shutil.which("go") or "/usr/local/go/bin/go"
        for d in ("bin", "cni", "images"):
            (stage / d).mkdir(parents=True, exist_ok=True)
        (work / "out").mkdir(parents=True, exist_ok=True)

    # ---- running tools

    def env(self, cgo: bool = False) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"CGO_ENABLED": "1" if cgo else "0", "GOOS": "linux", "GOARCH": "amd64",
                    "GOWORK": "off", "GOFLAGS": "-buildvcs=false", "GOTOOLCHAIN": "local"})
        return env

    def run(self, cmd: list[str], what: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float | None = None) -> str:
        try:
            res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError as exc:
            raise BundleError(f"{what}: {cmd[0]} is not installed (scripts/setup installs it)") from exc
        except subprocess.TimeoutExpired as exc:
            raise BundleError(f"{what}: {' '.join(cmd[:4])} ... did not finish within {timeout:.0f} s") from exc
        if res.returncode != 0:
            lines = [ln for ln in (res.stderr or res.stdout).strip().splitlines()
                     if not ln.startswith("go: downloading ")]
            tail = "\n".join(lines[-15:])
            raise BundleError(f"{what} failed ({' '.join(cmd[:3])} ... exit {res.returncode}):\n{tail}")
        return res.stdout

    def check_proxy(self) -> None:
        k = self.p["kubernetes"]
        mod = f"{k['module']}@{k['version']}"
        proxy = os.environ.get("GOPROXY") or self.run([self.go, "env", "GOPROXY"], "go env").strip()
        try:
            self.run([self.go, "list", "-m", "-json", mod], f"the Go module proxy ({proxy}) for {mod}",
                     env=self.env(), timeout=PROXY_TIMEOUT)
        except BundleError as exc:
            raise BundleError(f"no Go module proxy answers for {mod} (GOPROXY={proxy}); a bundle is built "
                              f"from Go modules and needs one:\n{exc}") from exc

    def step(self, label: str, fn: Callable[[], Any]) -> Any:
        t = time.monotonic()
        out = fn()
        self.say(f"  {label:<50} {time.monotonic() - t:6.1f} s   (total {time.monotonic() - self.t0:5.0f} s)")
        return out

    # ---- Go modules

    def download(self, module: str, version: str) -> Path:
        res = subprocess.run([self.go, "mod", "download", "-json", f"{module}@{version}"],
                             capture_output=True, text=True, env=self.env())
        try:
            info = json.loads(res.stdout)
        except ValueError:
            info = {"Error": (res.stderr.strip().splitlines() or ["no output"])[-1]}
        if res.returncode != 0 or info.get("Error") or not info.get("Dir"):
            error = " ".join(str(info.get("Error") or res.stderr).split())
            raise BundleError(f"downloading {module}@{version} failed: {error}")
        return Path(info["Dir"])

    def modfile(self, module: str, version: str, src: Path, replaced: Callable[[str], str]) -> Path:
        """A copy of the module's go.mod without its local-path replaces (they name directories a module
        zip does not carry, e.g. k8s.io/kubernetes' staging/): each one is required at its published
        version instead (`replaced(path)`). Built with -modfile from the read-only module directory."""
        wdir = self.work / "gomod" / f"{module.replace('/', '_')}@{version}"
        gomod = wdir / "go.mod"
        if gomod.exists():
            return gomod
        wdir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / "go.mod", gomod)
        if (src / "go.sum").exists():
            shutil.copyfile(src / "go.sum", wdir / "go.sum")
        for f in wdir.iterdir():
            f.chmod(0o644)
        spec = json.loads(self.run([self.go, "mod", "edit", "-json", str(gomod)], "go mod edit", env=self.env()))
        required = {r["Path"] for r in spec.get("Require") or []}
        args = []
        for r in spec.get("Replace") or []:
            new = r["New"]
            if new["Path"].startswith(("./", "../")) and not new.get("Version"):
                old = r["Old"]["Path"]
                args.append(f"-dropreplace={old}")
                if old in required:
                    args.append(f"-require={old}@{replaced(old)}")
        if args:
            self.run([self.go, "mod", "edit", *args, str(gomod)], f"go mod edit {module}", env=self.env())
        return gomod

    def go_build(self, module: str, version: str, pkg: str, out: Path, ldflags: str = "",
                 replaced: Callable[[str], str] | None = None, cgo: bool = False, tags: str = "",
                 extldflags: str = "") -> Path:
        src = self.download(module, version)
        gomod = self.modfile(module, version, src, replaced or (lambda _p: version))
        flags = f"-s -w {ldflags}".strip()
        if extldflags:
            flags += f" -extldflags '{extldflags}'"
        cmd = [self.go, "build", f"-modfile={gomod}", "-mod=mod", "-p", GO_JOBS, "-trimpath", "-ldflags", flags]
        if tags:
            cmd += ["-tags", tags]
        cmd += ["-o", str(out), pkg]
        self.run(cmd, f"building {module}@{version} ({pkg})", cwd=src, env=self.env(cgo))
        return out

    def add(self, path: Path, kind: str, name: str, version: str, source: str, **extra: str) -> None:
        self.artifacts.append({"path": str(path.relative_to(self.stage)), "kind": kind, "name": name,
                               "version": version, "source": source, "sha256": sha256_file(path), **extra})

    # ---- the components

    def kubernetes(self) -> None:
        k = self.p["kubernetes"]
        ver = k["version"]
        major, minor, _ = ver[1:].split(".")
        staging = staging_version(ver)
        date = self.module_time(k["module"], ver)
        ld = []
        for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):  # hack/lib/version.sh
            ld += [f"-X {pkg}.gitVersion={ver}", f"-X {pkg}.gitMajor={major}", f"-X {pkg}.gitMinor={minor}",
                   f"-X {pkg}.gitTreeState=clean", f"-X {pkg}.buildDate={date}"]
        source = f"{k['module']}@{ver}"
        for name in ("kubeadm", "kubelet", "kubectl"):
            out = self.stage / "bin" / name
            self.step(f"bin/{name} {ver}", lambda n=name, o=out: self.go_build(
                k["module"], ver, f"./cmd/{n}", o, " ".join(ld), replaced=lambda _p: staging))
            self.add(out, "binary", name, ver, source)
        for name in K8S_SERVER:
            self.step(f"{name} {ver} (for its image)", lambda n=name: self.go_build(
                k["module"], ver, f"./cmd/{n}", self.work / "out" / n, " ".join(ld), replaced=lambda _p: staging))

    def module_time(self, module: str, version: str) -> str:
        out = self.run([self.go, "list", "-m", "-json", f"{module}@{version}"], f"go list {module}", env=self.env())
        return json.loads(out).get("Time", CREATED)

    def crictl(self) -> None:
        c = self.p["cri_tools"]
        out = self.stage / "bin" / "crictl"
        self.step(f"bin/crictl {c['version']}", lambda: self.go_build(
            c["module"], c["version"], "./cmd/crictl", out, f"-X {c['module']}/pkg/version.Version={c['version']}"))
        self.add(out, "binary", "crictl", c["version"], f"{c['module']}@{c['version']}")

    def containerd(self) -> None:
        c = self.p["containerd"]
        mod, ver = c["module"], c["version"]
        ld = f"-X {mod}/version.Version={ver} -X {mod}/version.Package={mod}"
        for name, tags in (("containerd", "urfave_cli_no_docs osusergo netgo static_build"),
                           ("containerd-shim-runc-v2", "urfave_cli_no_docs osusergo netgo static_build no_grpc"),
                           ("ctr", "urfave_cli_no_docs osusergo netgo static_build")):
            out = self.stage / "bin" / name
            self.step(f"bin/{name} {ver}", lambda n=name, o=out, t=tags: self.go_build(
                mod, ver, f"./cmd/{n}", o, ld, tags=t))
            self.add(out, "binary", name, ver, f"{mod}@{ver}")

    def runc(self) -> None:
        c = self.p["runc"]
        out = self.stage / "bin" / "runc"
        self.step(f"bin/runc {c['version']} (cgo, static)", lambda: self.go_build(
            c["module"], c["version"], ".", out, f"-X main.version={c['version'].lstrip('v')}", cgo=True,
            tags="seccomp urfave_cli_no_docs netgo osusergo", extldflags="-static"))
        self.add(out, "binary", "runc", c["version"], f"{c['module']}@{c['version']}")

    def cni(self) -> None:
        c = self.p["cni_plugins"]
        ld = f"-X {c['module']}/pkg/utils/buildversion.BuildVersion={c['version']}"
        for name, pkg in (("bridge", "./plugins/main/bridge"), ("host-local", "./plugins/ipam/host-local"),
                          ("loopback", "./plugins/main/loopback"), ("portmap", "./plugins/meta/portmap")):
            out = self.stage / "cni" / name
            self.step(f"cni/{name} {c['version']}", lambda p=pkg, o=out: self.go_build(
                c["module"], c["version"], p, o, ld))
            self.add(out, "cni", name, c["version"], f"{c['module']}@{c['version']}")
        f = self.p["flannel_cni_plugin"]
        out = self.stage / "cni" / "flannel"
        self.step(f"cni/flannel {f['version']}", lambda: self.go_build(
            f["module"], f["version"], "./plugins/meta/flannel", out,
            f"-X {f['module']}/pkg/utils/buildversion.BuildVersion={f['version']}"))
        self.add(out, "cni", "flannel", f["version"], f"{f['module']}@{f['version']}/plugins/meta/flannel")

    def pause(self) -> Path:
        k = self.p["kubernetes"]
        src = self.download(k["module"], k["version"]) / "build" / "pause" / "linux" / "pause.c"
        out = self.work / "out" / "pause"
        # kube's build/pause/Makefile: CFLAGS = -Os -Wall -Werror -static -DVERSION=v$(TAG)-$(REV)
        self.step(f"pause {k['pause']} (gcc -static)", lambda: self.run(
            ["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{k['pause']}-{k['version']}",
             "-o", str(out), str(src)], "compiling pause.c"))
        self.run(["strip", str(out)], "strip pause")
        return out

    def helm(self) -> None:
        c = self.p["helm"]
        out = self.stage / "bin" / "helm"
        self.step(f"bin/helm {c['version']}", lambda: self.go_build(
            c["module"], c["version"], "./cmd/helm", out,
            f"-X {c['module']}/internal/version.version={c['version']} "
            f"-X {c['module']}/internal/version.gitTreeState=clean"))
        self.add(out, "binary", "helm", c["version"], f"{c['module']}@{c['version']}")

    # ---- images

    def debian_base(self, d: dict[str, Any] | None = None, label: str = "base") -> Path:
        """A Debian minbase rootfs tar with d['packages'] (kept in the cache and reused)."""
        d = {"suite": (d or self.p["debian_base"])["suite"], "packages": (d or self.p["debian_base"])["packages"]}
        key = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
        out = cache_root() / "debian-base" / f"{d['suite']}-{key}.tar"
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        excludes = ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*"]
        cmd = ["mmdebstrap", "--quiet", "--variant=minbase", "--mode=root", "--format=tar",
               f"--include={','.join(d['packages'])}",
               *[f"--dpkgopt=path-exclude={e}" for e in excludes],
               "--customize-hook=rm -rf \"$1\"/var/cache/apt/* \"$1\"/var/lib/apt/lists/*",
               d["suite"], str(tmp)]
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH))
        self.step(f"debian {d['suite']} {label} (mmdebstrap)", lambda: self.run(cmd, "mmdebstrap", env=env))
        tmp.replace(out)
        return out

    def layer(self, name: str, entries: list[Entry]) -> Path:
        out = self.work / "layers" / f"{name}.tar"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_layer(out, entries)
        return out

    def write_image(self, img: Image) -> None:
        layout = self.work / "oci" / img.name
        shutil.rmtree(layout, ignore_errors=True)
        layout.parent.mkdir(parents=True, exist_ok=True)
        target = f"{layout}:img"
        self.run(["umoci", "init", "--layout", str(layout)], f"umoci init ({img.name})")
        self.run(["umoci", "new", "--image", target], f"umoci new ({img.name})")
        for layer in img.layers:
            self.run(["umoci", "raw", "add-layer", "--image", target, "--history.created", CREATED,
                      "--history.created_by", f"labctl bundle: {layer.name}", str(layer)],
                     f"umoci raw add-layer ({img.name})")
        cfg = ["umoci", "config", "--image", target, "--os", "linux", "--architecture", "amd64",
               "--created", CREATED, "--author", "labctl bundle", "--config.env", f"PATH={IMAGE_PATH}",
               "--config.workingdir", "/", "--no-history",
               "--manifest.annotation", f"org.opencontainers.image.ref.name={img.ref}",
               "--manifest.annotation", f"org.opencontainers.image.version={img.version}",
               "--manifest.annotation", f"org.opencontainers.image.source={img.source}",
               "--config.label", f"org.opencontainers.image.version={img.version}",
               "--config.label", f"org.opencontainers.image.source={img.source}"]
        cfg += ["--clear=config.entrypoint", "--clear=config.cmd"]
        for arg in img.entrypoint:
            cfg += ["--config.entrypoint", arg]
        for arg in img.cmd:
            cfg += ["--config.cmd", arg]
        self.run(cfg, f"umoci config ({img.name})")
        out = self.stage / "images" / f"{img.name}.tar"
        if out.exists():
            out.unlink()
        self.run(["skopeo", "copy", "--quiet", f"oci:{target}", f"oci-archive:{out}:{img.ref}"],
                 f"skopeo copy ({img.name})")
        self.add(out, "image", img.name, img.version, img.source, ref=img.ref)

    def image(self, img: Image) -> None:
        self.step(f"images/{img.name}.tar", lambda: self.write_image(img))

    def images_core(self) -> None:
        k = self.p["kubernetes"]
        ver, src = k["version"], f"{k['module']}@{k['version']}"
        pause = self.pause()
        self.image(Image("pause", self.refs["pause"], k["pause"], f"{src}/build/pause",
                         [self.layer("pause", [Entry("pause", pause)])], entrypoint=["/pause"]))
        e = self.p["etcd"]
        etcd_bin = self.work / "out" / "etcd"
        etcdctl_bin = self.work / "out" / "etcdctl"
        self.step(f"etcd {e['version']}", lambda: self.go_build(e["module"], e["version"], ".", etcd_bin))
        self.step(f"etcdctl {e['version']}", lambda: self.go_build(e["ctl_module"], e["version"], ".", etcdctl_bin))
        self.image(Image("etcd", self.refs["etcd"], e["tag"], f"{e['module']}@{e['version']}",
                         [self.layer("etcd", [Entry("usr/local/bin/etcd", etcd_bin),
                                              Entry("usr/local/bin/etcdctl", etcdctl_bin),
                                              Entry("var/lib/etcd", is_dir=True), Entry("tmp", is_dir=True)])],
                         entrypoint=["/usr/local/bin/etcd"]))
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            self.image(Image(name, self.refs[name], ver, src,
                             [self.layer(name, [Entry(f"usr/local/bin/{name}", self.work / "out" / name),
                                                Entry("tmp", is_dir=True)])],
                             entrypoint=[f"/usr/local/bin/{name}"]))
        base = self.debian_base()
        self.image(Image("kube-proxy", self.refs["kube-proxy"], ver, src,
                         [base, self.layer("kube-proxy", [Entry("usr/local/bin/kube-proxy",
                                                                self.work / "out" / "kube-proxy")])],
                         entrypoint=["/usr/local/bin/kube-proxy"]))
        c = self.p["coredns"]
        coredns_bin = self.work / "out" / "coredns"
        self.step(f"coredns {c['version']}", lambda: self.go_build(c["module"], c["version"], ".", coredns_bin))
        self.image(Image("coredns", self.refs["coredns"], c["version"], f"{c['module']}@{c['version']}",
                         [self.layer("coredns", [Entry("coredns", coredns_bin)])], entrypoint=["/coredns"]))
        f = self.p["flannel"]
        flanneld = self.work / "out" / "flanneld"
        # flannel's Makefile builds amd64 with cgo (the udp backend) and -extldflags -static
        self.step(f"flanneld {f['version']} (cgo, static)", lambda: self.go_build(
            f["module"], f["version"], ".", flanneld, f"-X {f['module']}/pkg/version.Version={f['version']}",
            cgo=True, tags="netgo osusergo", extldflags="-static"))
        self.image(Image("flannel", self.refs["flannel"], f["version"], f"{f['module']}@{f['version']}",
                         [base, self.layer("flannel", [Entry("opt/bin/flanneld", flanneld)])],
                         entrypoint=["/opt/bin/flanneld"]))
        fc = self.p["flannel_cni_plugin"]
        # the kube-flannel DaemonSet's init container runs `cp -f /flannel /opt/cni/bin/flannel`: busybox gives cp
        self.image(Image("flannel-cni-plugin", self.refs["flannel-cni-plugin"], fc["version"],
                         f"{fc['module']}@{fc['version']}/plugins/meta/flannel",
                         [self.layer("flannel-cni-plugin", [Entry("flannel", self.stage / "cni" / "flannel"),
                                                            *self.busybox_entries()])],
                         cmd=["/bin/sh"]))

    def busybox_entries(self) -> list[Entry]:
        busybox = Path("/bin/busybox")
        if not busybox.exists():
            raise BundleError("busybox-static is not installed (/bin/busybox; scripts/setup installs it)")
        applets = self.run([str(busybox), "--list-full"], "busybox --list-full").split()
        entries = [Entry("bin/busybox", busybox)]
        entries += [Entry(a, link="/bin/busybox") for a in applets if a != "bin/busybox"]
        return entries + [Entry("tmp", is_dir=True)]

    def images_rest(self) -> None:
        m = self.p["metrics_server"]
        ms = self.work / "out" / "metrics-server"
        ld = " ".join(f"-X k8s.io/client-go/pkg/version.{k}={v}" for k, v in
                      (("gitVersion", m["version"]), ("gitTreeState", "clean"), ("buildDate", CREATED)))
        self.step(f"metrics-server {m['version']}", lambda: self.go_build(
            m["module"], m["version"], "./cmd/metrics-server", ms, ld))
        self.image(Image("metrics-server", self.refs["metrics-server"], m["version"], f"{m['module']}@{m['version']}",
                         [self.layer("metrics-server", [Entry("metrics-server", ms), Entry("tmp", is_dir=True)])],
                         entrypoint=["/metrics-server"]))
        b = self.p["busybox"]
        deb = self.run(["dpkg-query", "-W", "-f=${Version}", b["debian_package"]], "dpkg-query busybox-static")
        self.image(Image("busybox", self.refs["busybox"], b["version"], f"debian:{b['debian_package']}={deb}",
                         [self.layer("busybox", self.busybox_entries())], cmd=["sh"]))
        c = self.p["csr_approver"]
        rootfs = self.debian_base(c, "csr-approver base")
        self.image(Image("csr-approver", self.refs["csr-approver"], c["version"],
                         f"debian:{c['suite']} ({', '.join(c['packages'])})", [rootfs], cmd=["python3"]))
        self.agnhost()

    def agnhost(self) -> None:
        """Kubernetes' e2e test image: test/images/agnhost of the k8s.io/kubernetes module, built like the
        Kubernetes binaries (its go.mod with the staging replaces dropped), stamped as its Makefile does
        (-X main.Version=<VERSION>), static on an empty base (netexec and serve-hostname need nothing else)."""
        a = self.p["agnhost"]
        mod, ver, tag = a["module"], a["version"], a["tag"]
        version_file = self.download(mod, ver) / "test" / "images" / "agnhost" / "VERSION"
        try:
            upstream = version_file.read_text().strip()
        except OSError as exc:
            raise BundleError(f"agnhost: {mod}@{ver} has no test/images/agnhost/VERSION ({exc})") from exc
        if upstream != tag:
            raise BundleError(f"agnhost: pins.yml bundle.agnhost.tag is {tag!r} but {mod}@{ver} "
                              f"test/images/agnhost/VERSION says {upstream!r}")
        out = self.work / "out" / "agnhost"
        self.step(f"agnhost {tag} ({mod}@{ver})", lambda: self.go_build(
            mod, ver, "./test/images/agnhost", out, f"-X main.Version={tag}",
            replaced=lambda _p: staging_version(ver)))
        self.image(Image("agnhost", self.refs["agnhost"], tag, f"{mod}@{ver}/test/images/agnhost",
                         [self.layer("agnhost", [Entry("agnhost", out), Entry("tmp", is_dir=True)])],
                         entrypoint=["/agnhost"], cmd=["pause"]))

    def build(self) -> dict:
        self.check_proxy()
        self.kubernetes()
        self.crictl()
        self.containerd()
        self.runc()
        self.cni()
        self.images_core()
        self.helm()
        self.images_rest()
        manifest = make_manifest(self.p, self.artifacts, self.missing)
        (self.stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest


def build(minor: str, out: Path | None = None, say: Callable[[str], None] = print,
          pins: dict[str, Any] | None = None) -> Path:
    """Build the bundle for `minor` (a no-op when it is there already); returns its directory."""
    from labctl.model import versions

    bpins = bundle_pins(pins or versions.PINS, minor)
    want = digest(bpins)
    root = bundles_dir()
    target = out.resolve() if out else root / want
    # one build of a digest at a time: two at once shared the work directory and broke each other
    # (skopeo: "reading config blob ... no such file"); the second waits, then finds it up to date
    lock_path = cache_root() / "work" / f"{want[:16]}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        if not _try_lock(lock):
            say(f"another `labctl bundle build` is building {want[:12]}: waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(minor, out, say, bpins, want, root, target)


def _try_lock(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _build_locked(minor: str, out: Path | None, say: Callable[[str], None], bpins: dict[str, Any],
                  want: str, root: Path, target: Path) -> Path:
    if up_to_date(target, want):
        if not out:
            link_current(root, minor, target)
        say(f"bundle up to date: {target}")
        return target
    for tool in ("gcc", "umoci", "skopeo", "mmdebstrap"):
        if not shutil.which(tool):
            raise BundleError(f"{tool} is not installed (scripts/setup installs it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    work = cache_root() / "work" / want[:16]
    say(f"building bundle {want[:12]} (Kubernetes {bpins['kubernetes']['version']}) into {target}")
    t0 = time.monotonic()
    try:
        Builder(bpins, stage, work, say).build()
        if target.exists():
            shutil.rmtree(target)
        stage.replace(target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if not out:
        link_current(root, minor, target)
    say(f"bundle ready in {time.monotonic() - t0:.0f} s: {target}")
    return target
