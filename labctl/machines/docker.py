"""The container lab: systemd containers through Vagrant's docker provider.

- Containers `<lab>-<node>` (labels labctl.lab / labctl.node) from the node image labctl
  builds (machines/image.py), fixed IPs on the docker network `<lab>-net` that labctl
  creates from network.cidr (the Vagrantfile's private_network names it, so Vagrant's own
  network clean-up never touches it; `labctl down` removes it).
- The lab key reaches root as an authorized key through a read-only bind mount of
  .labctl/<name>/ssh/authorized_keys at /etc/labctl/authorized_keys, installed by the
  image's labctl-node-init.service (which also makes the node's own host keys at first boot).
- Host keys go into known_hosts from the node itself (`docker exec`), never by scanning.
- A repeated `up` on a running lab does not start Vagrant: it checks the containers,
  SSH and systemd directly and rewrites the inventory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from labctl.errors import RunFailed, UserError
from labctl.machines import NodeStatus, Progress, common, image, reach, sshkeys, vagrantfile
from labctl.model.config import Lab, Node
from labctl.state import StateDir

INSTALL_HINT = "apt-get install -y docker.io vagrant (Debian/Ubuntu)"


def _docker(*args: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RunFailed(f"docker {' '.join(args[:3])} failed: {res.stderr.strip()}")
    return res


def check_docker() -> str:
    """Docker installed and its daemon answering; return the engine ID."""
    common.require_binary("docker", INSTALL_HINT)
    try:
        res = _docker("info", "--format", "{{.ID}}|{{.ServerVersion}}", timeout=20)
    except subprocess.TimeoutExpired:
        raise UserError("the Docker daemon does not answer (docker info timed out); "
                        "restart it: systemctl restart docker (or start dockerd)") from None
    if res.returncode != 0 or "|" not in res.stdout:
        err = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "no answer"
        hint = ("start it: systemctl start docker (or `dockerd &` where there is no systemd)"
                if "connect" in err.lower() or "daemon" in err.lower() else
                "add your user to the docker group or run as root" if "permission" in err.lower() else
                "check `docker info`")
        raise UserError(f"the Docker daemon is not usable: {err}; {hint}")
    return res.stdout.strip().split("|", 1)[0]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "labctl"


def privileged_allowed(engine_id: str, tag: str) -> bool:
    """Does this engine run `--privileged` containers? Tried once per engine with a tiny container, cached."""
    cache = _cache_dir() / "docker-privileged.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if engine_id in known:
        return bool(known[engine_id])
    try:
        res = _docker("run", "--rm", "--privileged", "--network", "none", "--entrypoint", "/bin/true", tag, timeout=60)
        ok = res.returncode == 0
    except subprocess.TimeoutExpired:
        ok = False
    known[engine_id] = ok
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known))
    except OSError:
        pass
    return ok


class DockerProvider:
    def __init__(self, lab: Lab, lab_file: Path, rebuild_image: bool = False, node_image: str = image.DEFAULT_KIND):
        self.lab = lab
        self.lab_file = lab_file
        self.state = StateDir(lab_file, lab.name)
        self.rebuild_image = rebuild_image
        self.node_image = node_image  # prepared | plain (machines/image.py)
        self.network = vagrantfile.lab_network_name(lab)

    # -- names and live state --------------------------------------------------
    def container(self, node: Node) -> str:
        return vagrantfile.machine_name(self.lab, node)

    def kubelet_blocker(self) -> str:
        """Why a kubelet cannot run in this lab's Kubernetes nodes ('' when it can).

        The kubelet sets host-wide sysctls (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops)
        when they differ from what it wants; /proc/sys is read-only in a container that is not
        privileged, so it exits at start. A writable /proc/sys would let it rewrite the host's kernel
        settings, which a lab must not do: labctl runs nodes privileged only where the engine allows it.
        """
        nodes = [n for n in self.lab.nodes if n.role != "registry"]
        res = _docker("inspect", "--format", "{{.Name}} {{.HostConfig.Privileged}}", *[self.container(n) for n in nodes])
        plain = [ln.split()[0].lstrip("/") for ln in res.stdout.splitlines() if ln.split()[-1:] == ["false"]]
        if not plain:
            return ""
        return (f"this host cannot run a kubelet in a container-lab node ({', '.join(plain)} not privileged: "
                "this Docker engine refuses --privileged). The kubelet must set host-wide sysctls "
                "(vm.overcommit_memory, kernel.panic, kernel.panic_on_oops) and /proc/sys is read-only in "
                "the container; labctl does not change the host's kernel settings. The layers up to the "
                "images phase are ready. Run the cluster on the VM lab instead (provider: vagrant, "
                "see docs/vm-lab.md), or on a host whose Docker allows --privileged.")

    def containers(self) -> dict[str, dict[str, str]]:
        """{node name: {id, name, state}} of this lab's containers (by label)."""
        res = _docker("ps", "-a", "--no-trunc", "--filter", f"label=labctl.lab={self.lab.name}",
                      "--format", '{{.ID}}|{{.Names}}|{{.State}}|{{.Label "labctl.node"}}|{{.Label "labctl.lab_file"}}')
        out: dict[str, dict[str, str]] = {}
        for line in res.stdout.splitlines():
            cid, name, st, node, lab_file = (line.split("|") + [""] * 5)[:5]
            out[node] = {"id": cid, "name": name, "state": st, "lab_file": lab_file}
        return out

    def _check_ownership(self, live: dict[str, dict[str, str]]) -> None:
        mine = str(self.lab_file.resolve())
        for c in live.values():
            if c["lab_file"] and c["lab_file"] != mine:
                raise UserError(f"container {c['name']} belongs to another lab with the same name "
                                f"({c['lab_file']}); rename this lab (name:) or run `labctl down` there")

    def _check_names_free(self, nodes: list[Node]) -> None:
        """A container with a node's name that is not this lab's (no label)."""
        for n in nodes:
            res = _docker("inspect", "--format", '{{index .Config.Labels "labctl.lab"}}', self.container(n))
            if res.returncode == 0 and res.stdout.strip() != self.lab.name:
                raise UserError(f"a container named {self.container(n)} exists and is not part of lab "
                                f"{self.lab.name!r}; remove it or rename the lab")

    def _check_drift(self, live: dict[str, dict[str, str]]) -> None:
        """Existing containers must match lab.yml (address); a changed lab needs `labctl down` first."""
        extra = sorted(set(live) - {n.name for n in self.lab.nodes})
        if extra:
            raise UserError(f"containers of nodes no longer in lab.yml exist ({', '.join(extra)}); "
                            "run `labctl down` with the old lab.yml, or remove them: "
                            + " ".join(f"docker rm -f -v {live[e]['name']}" for e in extra))
        ids = [c["id"] for c in live.values()]
        if not ids:
            return
        fmt = ('{{index .Config.Labels "labctl.node"}}|{{range $k, $v := .NetworkSettings.Networks}}'
               '{{$k}}={{if $v.IPAMConfig}}{{$v.IPAMConfig.IPv4Address}}{{end}} {{end}}')
        res = _docker("inspect", "--format", fmt, *ids)
        for line in res.stdout.splitlines():
            node_name, _, nets = line.partition("|")
            for item in nets.split():
                net, _, ipam = item.partition("=")
                if net != self.network:
                    continue
                want = str(self.lab.node(node_name).ip)
                if ipam != want:
                    raise UserError(f"node {node_name} exists with address {ipam or 'none'}, lab.yml says {want}; "
                                    "run `labctl down` and `labctl up` to apply the change")

    def _network_exists(self) -> bool:
        return _docker("network", "inspect", "--format", "{{.Name}}", self.network).returncode == 0

    def _check_ips(self, nodes: list[Node]) -> None:
        """A node IP already taken on the lab network by a container that is not that node."""
        if self._network_exists():
            res = _docker("network", "inspect", "--format", "{{json .Containers}}", self.network)
            try:
                attached = json.loads(res.stdout or "{}") or {}
            except ValueError:
                attached = {}
            taken = {v.get("IPv4Address", "").split("/")[0]: v.get("Name", "") for v in attached.values()}
            for n in nodes:
                owner = taken.get(str(n.ip))
                if owner and owner != self.container(n):
                    raise UserError(f"nodes: {n.name}'s address {n.ip} is in use on network {self.network} "
                                    f"by container {owner}")
        common.check_ips_free_on_host(nodes)

    def _ensure_network(self) -> None:
        if self._network_exists():
            return
        cidr = self.lab.network.cidr
        res = _docker("network", "create", "--driver", "bridge", "--subnet", str(cidr),
                      "--gateway", str(cidr.network_address + 1), "--label", f"labctl.lab={self.lab.name}",
                      self.network)
        if res.returncode != 0:
            raise UserError(f"cannot create docker network {self.network} ({cidr}): {res.stderr.strip()}")

    # -- host keys ---------------------------------------------------------------
    def _record_host_key(self, node: Node, timeout: float = 60) -> None:
        """Read the node's own host keys with `docker exec` (not trust-on-first-use)."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            res = _docker("exec", self.container(node), "sh", "-c",
                          "cat /etc/ssh/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ecdsa_key.pub "
                          "/etc/ssh/ssh_host_rsa_key.pub", timeout=20)
            keys = [ln for ln in res.stdout.splitlines() if ln.strip()]
            if res.returncode == 0 and len(keys) == 3:
                sshkeys.record_host(self.state, reach.node_target(self.lab, node, self.state).known_as, keys)
                return
            last = res.stderr.strip() or "host keys not generated yet"
            if time.monotonic() > deadline:
                raise RunFailed(f"node {node.name}: no SSH host keys after {int(timeout)} s ({last}); "
                                f"see `docker exec {self.container(node)} journalctl -u labctl-node-init`")
            time.sleep(0.3)

    # -- up ----------------------------------------------------------------------
    def up(self, progress: Progress) -> list[NodeStatus]:
        from labctl.provisioning.inventory import write_inventory

        engine = check_docker()
        common.require_binary("vagrant", INSTALL_HINT)
        live = self.containers()
        self._check_ownership(live)
        self._check_drift(live)
        todo = [n for n in self.lab.nodes if live.get(n.name, {}).get("state") != "running"]
        missing = [n for n in todo if n.name not in live]
        if todo:
            # everything that would stop the run is checked before anything is created
            common.check_subnet_free(self.lab.network.cidr, self.network)
            self._check_names_free(missing)
            self._check_ips(missing)
            common.check_memory(missing)
            common.check_inotify(len(todo))
        sshkeys.ensure_keypair(self.state)
        sshkeys.authorized_keys_file(self.state)
        if todo:
            tag, built = image.node_image(self.node_image, self.rebuild_image, progress)
            forced = os.environ.get("LABCTL_DOCKER_PRIVILEGED")  # "0"/"1" overrides the detection
            privileged = forced == "1" if forced in ("0", "1") else privileged_allowed(engine, tag)
            self._ensure_network()
            env = vagrantfile.vagrant_env(self.state, vagrantfile.resolve(
                self.lab, self.lab_file, "docker", node_image=tag, privileged=privileged))
            progress(f"vagrant up --provider docker {' '.join(n.name for n in todo)}")
            try:
                common.run_vagrant(["up", "--provider", "docker", *[n.name for n in todo]], env,
                                   self.lab_file.resolve().parent, timeout=900, progress=progress)
            except RunFailed as exc:
                raise RunFailed(f"{exc}\n(nodes: {', '.join(n.name for n in todo)})") from None
        elif self.rebuild_image:
            image.node_image(self.node_image, True, progress)
        targets = reach.node_targets(self.lab, self.state)
        for n in self.lab.nodes:
            if n in todo or not sshkeys.has_host(self.state, targets[n.name].known_name):
                self._record_host_key(n)
        progress("waiting for SSH and systemd on every node")
        results = common.wait_ready(self.lab, targets, timeout=180, progress=progress)
        write_inventory(self.lab, self.lab_file)
        ordered = [results[n.name] for n in self.lab.nodes]
        common.raise_on_failures(ordered)
        return ordered

    # -- down --------------------------------------------------------------------
    def down(self, progress: Progress) -> None:
        """Remove the containers with their volumes, the lab network and Vagrant's record of them.

        This is what `vagrant destroy` does for the docker provider (`docker rm -f -v`), done in
        one docker call instead of one Vagrant action per machine: about 1 s instead of 10-16 s
        for 3 nodes here. Vagrant's state directory for the lab is removed with them.
        """
        check_docker()
        live = self.containers()
        self._check_ownership(live)
        if live:
            progress(f"removing {len(live)} container(s) and their volumes")
            _docker("rm", "-f", "-v", *[c["id"] for c in live.values()], timeout=120, check=True)
        if self._network_exists():
            progress(f"removing network {self.network}")
            self._remove_network()
        shutil.rmtree(self.state.root / "vagrant", ignore_errors=True)
        sshkeys.forget_hosts(self.state, [x for t in reach.node_targets(self.lab, self.state).values()
                                          for x in t.known_as])

    def _remove_network(self, attempts: int = 10, pause: float = 2.0) -> None:
        """`docker network rm`, retried while dockerd still counts the endpoints of containers
        just removed (seen with 30 nodes: "has active endpoints" for a few seconds). Bounded."""
        for _ in range(attempts):
            res = _docker("network", "rm", self.network, timeout=60)
            if res.returncode == 0 or "not found" in res.stderr:
                return
            if "active endpoints" not in res.stderr:
                raise RunFailed(f"docker network rm {self.network} failed: {res.stderr.strip()}")
            time.sleep(pause)
        raise RunFailed(f"docker network rm {self.network}: dockerd still counts endpoints of the removed "
                        "containers (a dockerd bug, seen with many nodes); restart dockerd "
                        "(systemctl restart docker) and run `labctl down` again")

    # -- status ------------------------------------------------------------------
    def status(self) -> list[NodeStatus]:
        check_docker()
        live = self.containers()
        out = []
        for n in self.lab.nodes:
            c = live.get(n.name)
            if c is None:
                out.append(NodeStatus(n.name, n.role, str(n.ip), "not created"))
                continue
            if c["state"] != "running":
                out.append(NodeStatus(n.name, n.role, str(n.ip), c["state"]))
                continue
            res = _docker("exec", c["id"], "sh", "-c",
                          "systemctl is-system-running; systemctl --failed --no-legend --plain | awk '{print $1}'",
                          timeout=20)
            lines = res.stdout.split()
            sstate = lines[0] if lines else "unknown"
            detail = f"failed units: {' '.join(lines[1:])}" if len(lines) > 1 else ""
            out.append(NodeStatus(n.name, n.role, str(n.ip), sstate, detail))
        return out
