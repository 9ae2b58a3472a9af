"""labctl init: write a commented lab.yml with the course topology."""

from __future__ import annotations

import argparse
import ipaddress

from labctl.commands._common import add_command
from labctl.errors import UserError
from labctl.model.versions import DEFAULT_KUBERNETES
from labctl.state import REPO_ROOT


def add_parser(sub) -> None:
    p = add_command(sub, "init", "write a commented lab.yml (control plane 'master', workers, 'registry')",
                    "labctl init --provider docker --workers 2", run)
    p.add_argument("--provider", choices=["vagrant", "docker", "existing"], default="docker",
                   help="how the machines are made (default: docker, the container lab)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="number of workers (default 1)")
    p.add_argument("--name", default="k8s-lab", help="lab name (default k8s-lab)")
    p.add_argument("--cidr", default="192.168.56.0/24", help="node network (default 192.168.56.0/24)")
    p.add_argument("--force", action="store_true", help="overwrite an existing lab.yml")


def render_lab_yml(name: str, provider: str, workers: int, cidr: str) -> str:
    import jinja2

    net = ipaddress.IPv4Network(cidr)
    base = net.network_address
    if net.num_addresses < 256:
        raise UserError(f"--cidr {cidr}: use a /24 or larger so the course addresses (.21, .31.., .100) fit")
    nodes = [{"name": "master", "role": "control-plane", "ip": str(base + 21), "cpus": 2, "memory_mb": 2048}]
    for i in range(workers):
        name_i = "node" if workers == 1 else f"node{i + 1}"
        nodes.append({"name": name_i, "role": "worker", "ip": str(base + 31 + i), "cpus": 2, "memory_mb": 2048})
    nodes.append({"name": "registry", "role": "registry", "ip": str(base + 100), "cpus": 1, "memory_mb": 1024})
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(REPO_ROOT / "templates")),
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    return env.get_template("lab.yml.j2").render(
        name=name, provider=provider, cidr=cidr, nodes=nodes, k8s_version=DEFAULT_KUBERNETES,
        # ipvs needs kernel modules a container cannot load; nftables is upstream's successor
        proxy_mode="nftables" if provider == "docker" else "ipvs",
    )


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.workers <= 60:
        raise UserError(f"--workers: found {args.workers}; allowed 0 to 60")
    try:
        ipaddress.IPv4Network(args.cidr)
    except ValueError as exc:
        raise UserError(f"--cidr: {exc}") from None
    if args.lab.exists() and not args.force:
        raise UserError(f"{args.lab} exists; use --force to overwrite it")
    text = render_lab_yml(args.name, args.provider, args.workers, args.cidr)
    try:
        args.lab.write_text(text)
    except OSError as exc:
        raise UserError(f"--lab {args.lab}: cannot write: {exc.strerror}") from None
    print(f"wrote {args.lab} ({args.provider}, 1 control plane, {args.workers} worker(s), 1 registry); "
          "next: labctl check")
    return 0
