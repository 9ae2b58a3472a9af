"""The container lab's node image `labctl/node:debian12`, built locally (no registry is pulled).

Recipe: Debian 12 (bookworm) from the host's Debian mirror (default deb.debian.org) with
mmdebstrap when present, else debootstrap, streamed as a tar into `docker import`.
The image holds NO SSH host keys and NO authorized key:

- `labctl-node-init.service` runs before ssh.service on every boot; it generates the
  node's own host keys when missing (`ssh-keygen -A`, so each node has its own keys, made
  at its first boot) and installs the lab's public key, bind-mounted read-only at
  /etc/labctl/authorized_keys, as root's authorized key (copied with root ownership and
  0600, so sshd's StrictModes is satisfied whatever the owner of the file on the host).
- Units that fail or are useless in a container are masked.
- apt uses the host's Debian sources when the host runs bookworm (so a host whose mirror
  is the only reachable one works), else deb.debian.org.

The image is tagged `labctl/node:debian12-<hash>` where <hash> covers the whole recipe,
so a changed recipe builds a new image; `labctl/node:debian12` points at the newest.

The PREPARED image (`labctl/node:debian12-prepared-<hash>`, the default of `labctl up`) is the
plain image plus the Debian packages the host/runtime/registry/nfs roles install, read from
the roles' own vars/Debian.yml (one list), installed the way the roles install them (base
without recommends, the others with). Like kind's node image: most of a first provision is
dpkg, so it is done once per versions set (<hash> covers the plain image's tag, the package
lists and the script) and cached. Nothing it adds runs at boot that the roles start
themselves (containerd, docker, docker-registry, nfs-server are installed but disabled): a
first provision still renders every config, enables and starts the services, and reports
changed; workers do not run a dockerd the plain path would not give them. The plain image
stays for what must exercise a first install (`labctl up --node-image plain`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from labctl.errors import RunFailed, UserError
from labctl.machines.common import run_streamed
from labctl.state import REPO_ROOT

REPO = "labctl/node"
FLAVOUR = "debian12"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "sudo",
    "iproute2", "ca-certificates",
)
# Units that fail or make no sense in a container (no udev, no module loading, no
# kernel debug file systems, no consoles, no periodic maintenance of a throw-away node).
MASKED_UNITS = (
    "systemd-udevd.service", "systemd-udevd-kernel.socket", "systemd-udevd-control.socket",
    "systemd-udev-trigger.service", "systemd-udev-settle.service",
    "systemd-modules-load.service", "kmod-static-nodes.service",
    "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount", "dev-hugepages.mount", "dev-mqueue.mount",
    "systemd-remount-fs.service", "systemd-firstboot.service", "systemd-journald-audit.socket",
    "getty@tty1.service", "console-getty.service", "getty.target",
    "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service",
    "fstrim.timer", "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
)

NODE_INIT = """\
#!/bin/sh
# labctl-node-init: per-node SSH host keys (first boot) and the lab's authorized key.
set -eu
ssh-keygen -A
# kubelet reads /dev/kmsg; a container that is not privileged has none (kind links the console)
[ -e /dev/kmsg ] || ln -s /dev/console /dev/kmsg
if [ -r /etc/labctl/authorized_keys ]; then
    install -d -m 0700 /root/.ssh
    install -m 0600 /etc/labctl/authorized_keys /root/.ssh/authorized_keys
fi
"""

NODE_INIT_UNIT = """\
[Unit]
Description=labctl node init: per-node SSH host keys, the lab's authorized key
Before=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/labctl-node-init

[Install]
WantedBy=multi-user.target
"""

SSH_DROPIN = """\
[Unit]
Wants=labctl-node-init.service
After=labctl-node-init.service
"""

SSHD_CONFIG = """\
# labctl: key authentication only
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""

DEFAULT_SOURCES = f"""\
Types: deb
URIs: {DEFAULT_MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

# Runs on the host with the root file system as $1 and the staging directory as $2.
CUSTOMIZE = """\
#!/bin/sh
set -eu
root="$1"; stage="$2"
rm -f "$root"/etc/ssh/ssh_host_*
install -m 0755 "$stage/labctl-node-init" "$root/usr/local/sbin/labctl-node-init"
install -m 0644 "$stage/labctl-node-init.service" "$root/etc/systemd/system/labctl-node-init.service"
install -d -m 0755 "$root/etc/systemd/system/ssh.service.d" "$root/etc/labctl"
install -m 0644 "$stage/ssh-labctl.conf" "$root/etc/systemd/system/ssh.service.d/labctl.conf"
install -m 0644 "$stage/sshd-labctl.conf" "$root/etc/ssh/sshd_config.d/labctl.conf"
systemctl --root="$root" enable labctl-node-init.service ssh.service
for unit in $(cat "$stage/masked-units"); do systemctl --root="$root" mask "$unit"; done
rm -f "$root/etc/apt/sources.list"
rm -f "$root"/etc/apt/sources.list.d/*
cp "$stage"/apt/* "$root/etc/apt/sources.list.d/"
chmod 0644 "$root"/etc/apt/sources.list.d/*
# a machine-id per container (systemd generates it at first boot)
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root/etc/hostname"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
"""


# The prepared image: where its package lists come from -- (role, variable in vars/Debian.yml,
# install recommends?) -- installed the way the roles install them: base with
# install_recommends false, the others through ansible.builtin.package (apt's default).
# Not in it: firewalld (only `host.firewall: ports`; Debian starts it on install, and a
# firewalld started in a container flushes Docker's DNS rules before the role's drop-in
# exists), systemd-timesyncd (VMs only), ipvsadm/ipset (only `proxy_mode: ipvs`).
PREPARED_SOURCES = (
    ("base", "base_os_packages", False),
    ("containerd", "containerd_os_packages", True),
    ("docker", "docker_os_packages", True),
    ("registry", "registry_os_packages", True),
    ("nfs", "nfs_server_packages", True),
    ("nfs", "nfs_client_packages", True),
)
# Enabled by those packages, disabled in the image: the roles enable and start the first
# four on the nodes that need them (so a first run still reports them changed, and a worker
# gets no dockerd/registry); nfs-server and nfs-blkmap cannot run in a container (no nfsd,
# no rpc_pipefs) and would leave every node `degraded` at boot.
PREPARED_DISABLED = (
    "containerd.service", "docker.service", "docker.socket", "docker-registry.service",
    "nfs-server.service", "nfs-blkmap.service",
)
# Mounts nfs-common's units pull in that fail in a container (rpc_pipefs needs the host kernel's sunrpc).
PREPARED_MASKED = ("run-rpc_pipefs.mount", "proc-fs-nfsd.mount")

# Runs in a container of the plain image (no systemd inside: nothing starts), then committed.
PREPARE = """\
set -eu
export DEBIAN_FRONTEND=noninteractive
# belt and braces: no service starts from a maintainer script while the image is made
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
apt-get update -q
apt-get install -y -q --no-install-recommends $LABCTL_NORECOMMENDS
apt-get install -y -q $LABCTL_PACKAGES
systemctl disable $LABCTL_DISABLED
systemctl mask $LABCTL_MASKED
rm -f /usr/sbin/policy-rc.d /etc/ssh/ssh_host_*
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log /var/log/apt/*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
"""

KINDS = ("prepared", "plain")
DEFAULT_KIND = "prepared"


# ---------------------------------------------------------------------------
# Host apt configuration
# ---------------------------------------------------------------------------


def _host_codename() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    return m.group(1) if m else ""


def _keyrings(text: str) -> list[str]:
    found = re.findall(r"^Signed-By:\s*(\S+)", text, re.M | re.I)
    found += re.findall(r"signed-by=([^\s\]]+)", text, re.I)
    return found


def host_apt_sources() -> dict[str, str]:
    """{file name: content} of the host's active Debian sources, when the host runs bookworm.

    Only files whose keyrings the image also has (debian-archive-keyring) are taken, so a
    third-party repository of the host does not break apt in the nodes.
    """
    if _host_codename() != SUITE:
        return {"debian.sources": DEFAULT_SOURCES}
    files: dict[str, str] = {}
    candidates = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        candidates += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        body = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if not body or "debian" not in text:
            continue
        if any(not k.startswith("/usr/share/keyrings/debian-archive") for k in _keyrings(text)):
            continue
        name = "host-sources.list" if path.name == "sources.list" else path.name
        files[name] = text
    return files or {"debian.sources": DEFAULT_SOURCES}


def bootstrap_mirror(sources: dict[str, str]) -> str:
    """The Debian mirror the host uses (first `.../debian` URI), else deb.debian.org."""
    for text in sources.values():
        for m in re.finditer(r"(https?://\S+?/debian)/?(?:\s|$)", text):
            return m.group(1)
    return DEFAULT_MIRROR


# ---------------------------------------------------------------------------
# The recipe and its hash
# ---------------------------------------------------------------------------


def write_recipe_files(r: dict[str, object], where: Path) -> None:
    """The recipe's files into `where`, its apt sources into `where`/apt (node image and box alike)."""
    for key, into in (("files", where), ("apt", where / "apt")):
        entries = r[key]
        assert isinstance(entries, dict)
        into.mkdir(exist_ok=True)
        for name, content in entries.items():
            (into / name).write_text(content)


def recipe() -> dict[str, object]:
    sources = host_apt_sources()
    return {
        "suite": SUITE,
        "mirror": bootstrap_mirror(sources),
        "packages": list(PACKAGES),
        "masked": list(MASKED_UNITS),
        "files": {
            "labctl-node-init": NODE_INIT,
            "labctl-node-init.service": NODE_INIT_UNIT,
            "ssh-labctl.conf": SSH_DROPIN,
            "sshd-labctl.conf": SSHD_CONFIG,
            "customize.sh": CUSTOMIZE,
        },
        "apt": sources,
    }


def recipe_hash(r: dict[str, object] | None = None) -> str:
    data = json.dumps(r if r is not None else recipe(), sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()[:12]


def image_tag(r: dict[str, object] | None = None) -> str:
    return f"{REPO}:{FLAVOUR}-{recipe_hash(r)}"


def image_exists(tag: str) -> bool:
    res = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag],
                         capture_output=True, text=True, timeout=30)
    return res.returncode == 0


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def _stage(r: dict[str, object], where: Path) -> None:
    write_recipe_files(r, where)
    (where / "masked-units").write_text("\n".join(MASKED_UNITS) + "\n")


def _left(deadline: float) -> float:
    """Seconds until `deadline` (a build's steps share one time limit)."""
    return max(1.0, deadline - time.monotonic())


def build_image(rebuild: bool = False, on_line: Callable[[str], None] = lambda _l: None,
                timeout: float = 1200) -> tuple[str, bool]:
    """Build the node image unless it exists; return (tag, built)."""
    r = recipe()
    tag = image_tag(r)
    if not rebuild and image_exists(tag):
        return tag, False
    tool = "mmdebstrap" if shutil.which("mmdebstrap") else "debootstrap" if shutil.which("debootstrap") else None
    forced = os.environ.get("LABCTL_BOOTSTRAP")  # "mmdebstrap" or "debootstrap": use that one
    if forced in ("mmdebstrap", "debootstrap"):
        tool = forced if shutil.which(forced) else None
    if tool is None:
        raise UserError("building the node image needs mmdebstrap or debootstrap: apt-get install -y mmdebstrap")
    if shutil.which("tar") is None:
        raise UserError("building the node image needs tar")
    deadline = time.monotonic() + timeout
    # STOPSIGNAL cannot be set by `docker import`: the nodes get --stop-signal at creation
    changes = ['CMD ["/sbin/init"]', "ENV container=docker", f"LABEL labctl.recipe={recipe_hash(r)}"]
    import_cmd = ["docker", "import"]
    for c in changes:
        import_cmd += ["--change", c]
    import_cmd += ["-", tag]
    old_id = _image_id(tag)
    what = f"{tool} (building the node image)"
    with tempfile.TemporaryDirectory(prefix="labctl-image-") as tmp:
        stage = Path(tmp) / "stage"
        stage.mkdir()
        _stage(r, stage)
        customize = f"sh {stage}/customize.sh \"$1\" {stage}"
        include = ",".join(PACKAGES)
        on_line(f"building {tag} with {tool} from {r['mirror']} ({SUITE})")
        if tool == "mmdebstrap":
            # the tar goes through a pipe into `docker import`; mmdebstrap's progress (stderr) is streamed
            read_end, write_end = os.pipe()
            imp = subprocess.Popen(import_cmd, stdin=read_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            os.close(read_end)
            try:
                run_streamed(["mmdebstrap", "--variant=minbase", f"--include={include}", "--components=main",
                              "--format=tar", f"--customize-hook={customize}", SUITE, "-", str(r["mirror"])],
                             what, _left(deadline), on_line, stdout=write_end)
            except BaseException:
                imp.kill()
                imp.communicate()
                raise
            finally:
                os.close(write_end)
            _out, err = imp.communicate(timeout=max(10, deadline - time.monotonic()))
            tar_rc = 0  # mmdebstrap wrote the tar itself
        else:
            rootfs = Path(tmp) / "rootfs"
            # debootstrap writes its progress (I: Retrieving ...) to stdout and errors to stderr
            run_streamed(["debootstrap", "--variant=minbase", f"--include={include}", "--components=main",
                          SUITE, str(rootfs), str(r["mirror"])], what, _left(deadline), on_line)
            on_line("customizing the root file system")
            res = subprocess.run(["sh", str(stage / "customize.sh"), str(rootfs), str(stage)],
                                 capture_output=True, text=True, timeout=300)
            if res.returncode != 0:
                raise RunFailed(f"customizing the node image failed: {res.stderr.strip()[-2000:]}")
            on_line("importing into docker")
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."],
                                   stdout=subprocess.PIPE)
            imp = subprocess.Popen(import_cmd, stdin=tar.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert tar.stdout is not None
            tar.stdout.close()
            _out, err = imp.communicate(timeout=max(10, deadline - time.monotonic()))
            tar_rc = tar.wait()
        if imp.returncode != 0:
            raise RunFailed(f"docker import failed: {err.decode(errors='replace').strip()}")
        if tar_rc != 0:
            raise RunFailed(f"tar failed (exit {tar_rc}) importing the node image")
    subprocess.run(["docker", "tag", tag, f"{REPO}:{FLAVOUR}"], capture_output=True, timeout=30, check=False)
    _remove_outdated(tag, old_id, PLAIN_TAG)
    on_line(f"built {tag}")
    return tag, True


def _image_id(ref: str) -> str:
    res = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref],
                         capture_output=True, text=True, timeout=30)
    return res.stdout.strip() if res.returncode == 0 else ""


PLAIN_TAG = re.compile(rf"^{re.escape(REPO)}:{FLAVOUR}-[0-9a-f]{{12}}$")
PREPARED_TAG = re.compile(rf"^{re.escape(REPO)}:{FLAVOUR}-prepared-[0-9a-f]{{12}}$")


def _remove_outdated(tag: str, old_id: str, kind: re.Pattern[str]) -> None:
    """Drop the images of older recipes of this kind and the one a rebuild replaced.

    `docker rmi` without -f: an image a node (or the prepared image) still uses is kept.
    """
    res = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", REPO],
                         capture_output=True, text=True, timeout=30)
    stale = [ref for ref in res.stdout.split() if kind.match(ref) and ref != tag]
    if old_id and old_id != _image_id(tag):
        stale.append(old_id)
    for ref in stale:
        subprocess.run(["docker", "rmi", ref], capture_output=True, timeout=60, check=False)


# ---------------------------------------------------------------------------
# The prepared image
# ---------------------------------------------------------------------------


def role_packages(role: str, var: str, roles_dir: Path | None = None) -> list[str]:
    """A package list from roles/<role>/vars/Debian.yml (the list the role itself installs)."""
    import yaml

    path = (roles_dir or REPO_ROOT / "roles") / role / "vars" / "Debian.yml"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise RunFailed(f"the prepared node image reads its packages from {path}: {exc}") from None
    value = data.get(var)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RunFailed(f"{path}: {var} must be a list of package names (the prepared image installs it)")
    return value


def prepared_packages(roles_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """(installed without recommends, installed with recommends), in the roles' order, no duplicates."""
    norec: list[str] = []
    rec: list[str] = []
    for role, var, recommends in PREPARED_SOURCES:
        for pkg in role_packages(role, var, roles_dir):
            if pkg not in norec and pkg not in rec:
                (rec if recommends else norec).append(pkg)
    return norec, rec


def prepared_recipe(base_tag: str | None = None, roles_dir: Path | None = None) -> dict[str, object]:
    norec, rec = prepared_packages(roles_dir)
    return {
        "base": base_tag or image_tag(),
        "no_recommends": norec,
        "packages": rec,
        "disabled": list(PREPARED_DISABLED),
        "masked": list(PREPARED_MASKED),
        "script": PREPARE,
    }


def prepared_tag(r: dict[str, object] | None = None) -> str:
    return f"{REPO}:{FLAVOUR}-prepared-{recipe_hash(r if r is not None else prepared_recipe())}"


def build_prepared(rebuild: bool = False, on_line: Callable[[str], None] = lambda _l: None,
                   timeout: float = 1200, rebuild_base: bool | None = None) -> tuple[str, bool]:
    """Build the prepared image (and the plain one it starts from) unless cached; return (tag, built).

    `rebuild` rebuilds both; `rebuild_base=False` rebuilds only the prepared layer (bench/).
    """
    base, base_built = build_image(rebuild if rebuild_base is None else rebuild_base, on_line, timeout)
    r = prepared_recipe(base)
    tag = prepared_tag(r)
    if not (rebuild or base_built) and image_exists(tag):
        return tag, False
    deadline = time.monotonic() + timeout
    name = f"labctl-prepare-{recipe_hash(r)}"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)
    norec, rec = r["no_recommends"], r["packages"]
    assert isinstance(norec, list) and isinstance(rec, list)
    env = {"LABCTL_NORECOMMENDS": " ".join(norec), "LABCTL_PACKAGES": " ".join(rec),
           "LABCTL_DISABLED": " ".join(PREPARED_DISABLED), "LABCTL_MASKED": " ".join(PREPARED_MASKED)}
    cmd = ["docker", "run", "--name", name, "--stop-signal", "SIGKILL"]
    for k, v in env.items():
        cmd += ["-e", f"{k}={v}"]
    cmd += [base, "sh", "-c", PREPARE]
    old_id = _image_id(tag)
    on_line(f"building {tag} from {base}: {len(norec) + len(rec)} packages of the host/runtime/registry/nfs roles")
    try:
        run_streamed(cmd, "installing the roles' packages into the node image", _left(deadline), on_line)
        changes = ['CMD ["/sbin/init"]', "ENV container=docker", f"LABEL labctl.recipe={recipe_hash(r)}",
                   "LABEL labctl.kind=prepared"]
        commit = ["docker", "commit"]
        for c in changes:
            commit += ["--change", c]
        res = subprocess.run([*commit, name, tag], capture_output=True, text=True,
                             timeout=max(30, deadline - time.monotonic()))
        if res.returncode != 0:
            raise RunFailed(f"docker commit failed: {res.stderr.strip()}")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)
    subprocess.run(["docker", "tag", tag, f"{REPO}:{FLAVOUR}-prepared"], capture_output=True, timeout=30, check=False)
    _remove_outdated(tag, old_id, PREPARED_TAG)
    on_line(f"built {tag}")
    return tag, True


def node_image(kind: str = DEFAULT_KIND, rebuild: bool = False, on_line: Callable[[str], None] = lambda _l: None,
               timeout: float = 1200) -> tuple[str, bool]:
    """The node image of this kind (prepared | plain), built when not cached; return (tag, built)."""
    if kind == "plain":
        return build_image(rebuild, on_line, timeout)
    if kind == "prepared":
        return build_prepared(rebuild, on_line, timeout)
    raise UserError(f"--node-image: found {kind!r}; allowed: {', '.join(KINDS)}")
