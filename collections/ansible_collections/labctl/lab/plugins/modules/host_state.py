#!/usr/bin/python
# labctl: read, in one module run, the live state several tasks of a role would each look at.

from __future__ import annotations

DOCUMENTATION = r"""
module: host_state
short_description: Read the live state of a host in one round trip (read-only)
description:
  - Returns the host name, the state of systemd units, which packages are not installed, the
    values of kernel parameters, the kernel modules loaded, which paths exist and the text of
    small files.
  - A role calls it once at its start and runs a changing task only where this state differs
    from the wanted one, instead of one module run per check (each costs a Python start on the node).
  - Never changes anything; it runs in check mode too.
options:
  units:
    description: systemd units; each is reported with C(load_state), C(active_state) and C(unit_file_state).
    type: list
    elements: str
    default: []
  packages:
    description:
      - package names (dpkg or rpm); their versions are returned in C(packages_installed),
        those not installed in C(packages_missing).
    type: list
    elements: str
    default: []
  sysctls:
    description: kernel parameter names (dotted); a parameter this kernel lacks is reported as null.
    type: list
    elements: str
    default: []
  kernel_modules:
    description: module names; those present in /sys/module are listed in C(kernel_modules_present).
    type: list
    elements: str
    default: []
  paths:
    description: paths; each is reported as true when it exists.
    type: list
    elements: path
    default: []
  read:
    description: small text files (at most 256 KiB) whose text is returned; a missing file gives null.
    type: list
    elements: path
    default: []
author: labctl
"""

EXAMPLES = r"""
- name: Read the host's state
  labctl.lab.host_state:
    units: [containerd]
    packages: [containerd, runc]
  register: containerd_state
"""

RETURN = r"""
hostname:
  description: the transient host name (the kernel's) and the static one (/etc/hostname, null when absent).
  type: dict
  returned: always
units:
  description: unit name as given -> load_state, active_state, unit_file_state (systemctl show).
  type: dict
  returned: always
packages_installed:
  description: package -> installed version, for the given packages that are installed.
  type: dict
  returned: always
packages_missing:
  description: the given packages that are not installed, in the given order.
  type: list
  returned: always
sysctls:
  description: parameter -> value as in /proc/sys (tabs kept, trailing newline removed), or null.
  type: dict
  returned: always
kernel_modules_present:
  description: the given modules present in /sys/module.
  type: list
  returned: always
paths:
  description: path -> exists.
  type: dict
  returned: always
files:
  description: path -> text, or null when the file does not exist.
  type: dict
  returned: always
"""

import os
import shutil
import socket

from ansible.module_utils.basic import AnsibleModule

READ_LIMIT = 256 * 1024


def read_text(path):
    try:
        with open(path, "rb") as f:
            data = f.read(READ_LIMIT + 1)
    except FileNotFoundError:
        return None
    if len(data) > READ_LIMIT:
        raise ValueError("%s is larger than %d bytes" % (path, READ_LIMIT))
    return data.decode("utf-8", errors="replace")


def unit_states(module, units):
    """One `systemctl show` for every unit; its blocks come in the order of the arguments."""
    if not units:
        return {}
    systemctl = module.get_bin_path("systemctl", required=True)
    props = "Id,LoadState,ActiveState,UnitFileState"
    rc, out, err = module.run_command([systemctl, "show", "--property=" + props, "--"] + list(units))
    if rc != 0:
        module.fail_json(msg="systemctl show %s failed (rc %d): %s" % (" ".join(units), rc, err.strip()))
    blocks = [b for b in out.strip("\n").split("\n\n")]
    if len(blocks) != len(units):
        module.fail_json(msg="systemctl show returned %d blocks for %d units: %r" % (len(blocks), len(units), out))
    result = {}
    for name, block in zip(units, blocks):
        kv = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        result[name] = {
            "load_state": kv.get("LoadState", ""),
            "active_state": kv.get("ActiveState", ""),
            "unit_file_state": kv.get("UnitFileState", ""),
        }
    return result


def installed_packages(module, packages):
    """name -> installed version, for the given packages that are installed (one dpkg-query, or rpm per name)."""
    if not packages:
        return {}
    dpkg_query = shutil.which("dpkg-query")
    if dpkg_query:
        # a name dpkg never heard of goes to stderr (rc 1) and is simply absent from stdout
        rc, out, err = module.run_command([dpkg_query, "-W", "-f=${Package}\\t${db:Status-Abbrev}\\t${Version}\\n", "--"]
                                          + list(packages))
        installed = {}
        for line in out.splitlines():
            fields = line.split("\t")
            if len(fields) == 3 and fields[1].startswith("ii"):
                installed[fields[0]] = fields[2]
        return installed
    rpm = module.get_bin_path("rpm")
    if rpm:
        installed = {}
        for p in packages:
            rc, out, err = module.run_command([rpm, "-q", "--whatprovides", "--qf", "%{VERSION}\\n", "--", p])
            if rc == 0 and out.strip():
                installed[p] = out.splitlines()[0].strip()
        return installed
    module.fail_json(msg="neither dpkg-query nor rpm is on this host: cannot tell which packages are installed")


def sysctl_values(keys):
    values = {}
    for key in keys:
        path = os.path.join("/proc/sys", key.replace(".", "/"))
        try:
            with open(path) as f:
                values[key] = f.read().rstrip("\n")
        except OSError:  # absent from this kernel, or write-only
            values[key] = None
    return values


def main():
    module = AnsibleModule(
        argument_spec=dict(
            units=dict(type="list", elements="str", default=[]),
            packages=dict(type="list", elements="str", default=[]),
            sysctls=dict(type="list", elements="str", default=[]),
            kernel_modules=dict(type="list", elements="str", default=[]),
            paths=dict(type="list", elements="path", default=[]),
            read=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        files = {path: read_text(path) for path in p["read"]}
    except (OSError, ValueError) as e:
        module.fail_json(msg="cannot read: %s" % e)
    static = read_text("/etc/hostname")
    installed = installed_packages(module, p["packages"])
    module.exit_json(
        changed=False,
        hostname={"transient": socket.gethostname(), "static": static.strip() if static is not None else None},
        units=unit_states(module, p["units"]),
        packages_installed=installed,
        packages_missing=[name for name in p["packages"] if name not in installed],
        sysctls=sysctl_values(p["sysctls"]),
        kernel_modules_present=[m for m in p["kernel_modules"] if os.path.isdir(os.path.join("/sys/module", m))],
        paths={path: os.path.lexists(path) for path in p["paths"]},
        files=files,
    )


if __name__ == "__main__":
    main()
