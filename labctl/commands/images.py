"""labctl images: every image the lab needs and its name in the lab registry; --push copies them there."""

from __future__ import annotations

import argparse
import json

from labctl.commands._common import add_command, load


def add_parser(sub) -> None:
    p = add_command(sub, "images", "list every image the lab needs (control plane, pause, CoreDNS, etcd, flannel, "
                    "addons) and its name in the lab registry; --push copies them there",
                    "labctl images --push", run)
    p.add_argument("--push", action="store_true",
                   help="copy the images into the lab registry (the images phase: the bundle's from the controller "
                        "when it has skopeo and reaches the registry, the others from the registry host)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")


def _failure(events: list[dict]) -> str:
    for ev in events:
        if ev.get("event") in ("runner_on_failed", "runner_on_unreachable"):
            data = ev.get("event_data", {})
            res = data.get("res", {})
            return f"{data.get('host')}: {data.get('task')}: {res.get('msg', res)}"
    return "ansible-playbook failed (see the event log in the lab's state directory)"


def run(args: argparse.Namespace) -> int:
    from labctl.errors import RunFailed, UserError
    from labctl.model.facts import LabFacts

    lab = load(args)
    facts = LabFacts.from_lab(lab)
    images = facts.images
    if args.json:
        print(json.dumps([{"source": i.source, "mirror": i.mirror, "group": i.group} for i in images], indent=2))
    else:
        width = max(len(i.source) for i in images)
        for i in images:
            print(f"{i.source:<{width}}  ->  {i.mirror}" if i.mirror else i.source)
    if not args.push:
        return 0
    if not facts.mirror.enabled:
        raise UserError("--push: this lab does not mirror images (kubernetes.mirror_images is false or there is "
                        "no registry node); the nodes pull from upstream")
    from labctl.provisioning.inventory import write_inventory
    from labctl.provisioning.runner import run_playbook
    from labctl.state import StateDir

    state = StateDir(args.lab, lab.name)
    state.secret("registry-password")
    hosts = write_inventory(lab, args.lab)
    result = run_playbook(state, "images.yml", hosts)
    if result.rc != 0:
        raise RunFailed(f"images phase failed: {_failure(result.events)}")
    changed = sum((result.stats.get("changed") or {}).values())
    print(f"{len(images)} images in {facts.registry.address} "
          f"({'copied the missing ones' if changed else 'all there already'})")
    return 0
