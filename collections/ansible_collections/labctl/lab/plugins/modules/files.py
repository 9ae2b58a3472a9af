#!/usr/bin/python
# labctl: directories and whole files with owner/group/mode, compared and written in one module run.

from __future__ import annotations

DOCUMENTATION = r"""
module: files
short_description: Directories and files with their content and attributes, in one module run
description:
  - Creates the directories, then compares every file's content, owner, group and mode with the
    wanted ones and writes only what differs, atomically (a temporary file renamed over the old one).
  - One module run for all items, where M(ansible.builtin.template) costs up to three per file.
  - The action plugin of the same name renders C(template) items and reads C(src) items on the
    controller; the module receives only C(content).
options:
  directories:
    description:
      - directories to create (with their parents) and their attributes.
      - The action plugin also takes a bare path, which gets the task's O(owner), O(group) and O(directory_mode).
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: the directory, type: path, required: true}
      owner: {description: owner name, type: str}
      group: {description: group name, type: str}
      mode: {description: octal mode as a string, such as "0755", type: raw}
  files:
    description:
      - files and their whole content.
      - The action plugin takes, instead of O(files[].content), exactly one of C(template) (a template of the
        role, rendered like the M(ansible.builtin.template) lookup), C(src) (a file on the controller, UTF-8
        text) or C(content); and O(owner)/O(group) for every item that does not set its own.
    type: list
    elements: dict
    default: []
    suboptions:
      dest: {description: the file on the host, type: path, required: true}
      content:
        description:
          - the text the file must hold (set by the action plugin).
          - Without it only the attributes are set, and the file must exist.
        type: str
      owner: {description: owner name, type: str}
      group: {description: group name, type: str}
      mode: {description: octal mode as a string, such as "0644", type: raw}
      diff: {description: return the old text for --diff (false for files that hold a secret), type: bool, default: true}
  unsafe_writes:
    description: write in place when the rename fails (a file Docker bind-mounts into a container).
    type: bool
    default: false
author: labctl
"""

EXAMPLES = r"""
- name: Write containerd's configuration
  labctl.lab.files:
    directories:
      - {path: /etc/containerd/certs.d/registry.lab:5000, mode: "0755"}
    files:
      - {dest: /etc/containerd/config.toml, template: config.toml.j2, mode: "0600", diff: false}
      - {dest: /etc/containerd/certs.d/registry.lab:5000/ca.crt, src: /path/on/controller/ca.crt, mode: "0644"}
    owner: root
    group: root
  notify: Restart containerd
"""

RETURN = r"""
changed_paths:
  description: every directory or file that was (or in check mode would be) created or changed, and what of it.
  type: list
  elements: dict
  returned: always
  sample: [{path: /etc/crictl.yaml, what: [content]}]
before:
  description: dest -> old text, for changed files with diff true, when Ansible runs with --diff.
  type: dict
  returned: when diff is requested
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native


def attribute_changes(module, path, want):
    """Which of owner/group/mode differ (without changing anything)."""
    st = os.lstat(path)
    what = []
    if want.get("owner") is not None:
        uid = _uid(want["owner"])
        if uid is None or st.st_uid != uid:
            what.append("owner")
    if want.get("group") is not None:
        gid = _gid(want["group"])
        if gid is None or st.st_gid != gid:
            what.append("group")
    if want.get("mode") is not None:
        if (st.st_mode & 0o7777) != _mode(want["mode"]):
            what.append("mode")
    return what


def _mode(value):
    """"0644" -> 0o644; an int is taken as it is (YAML read an unquoted 0644 as octal already)."""
    return value if isinstance(value, int) else int(str(value), 8)


def _uid(name):
    import pwd
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return int(name) if str(name).isdigit() else None


def _gid(name):
    import grp
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return int(name) if str(name).isdigit() else None


def set_attributes(module, path, want):
    args = module.load_file_common_arguments({"path": path, "owner": want.get("owner"),
                                              "group": want.get("group"), "mode": want.get("mode")})
    module.set_fs_attributes_if_different(args, False)


def ensure_attributes(module, path, item, changed):
    """An existing path: owner, group and mode as wanted."""
    what = attribute_changes(module, path, item)
    if what:
        changed.append({"path": path, "what": what})
        if not module.check_mode:
            set_attributes(module, path, item)


def ensure_directory(module, item, changed):
    path = item["path"]
    if os.path.isdir(path):
        return ensure_attributes(module, path, item, changed)
    if os.path.lexists(path):
        module.fail_json(msg="%s exists and is not a directory" % path, changed_paths=changed)
    changed.append({"path": path, "what": ["created"]})
    if not module.check_mode:
        os.makedirs(path)
        set_attributes(module, path, item)


def ensure_file(module, item, changed, before):
    dest = item["dest"]
    if item["content"] is None:  # attributes only
        if os.path.lexists(dest):
            return ensure_attributes(module, dest, item, changed)
        if module.check_mode:  # an earlier task of this run may create it
            return
        module.fail_json(msg="%s does not exist (no content given: only its owner, group and mode are set)" % dest,
                         changed_paths=changed)
    data = to_bytes(item["content"], errors="surrogate_or_strict")
    if os.path.isdir(dest):
        module.fail_json(msg="%s is a directory; a file was wanted there" % dest, changed_paths=changed)
    parent = os.path.dirname(dest) or "/"
    if not os.path.isdir(parent) and not module.check_mode:
        module.fail_json(msg="%s: its directory %s does not exist (list it under directories)" % (dest, parent),
                         changed_paths=changed)
    old = None
    if os.path.lexists(dest):
        with open(dest, "rb") as f:
            old = f.read()
    what = []
    if old is None:
        what.append("created")
    elif old != data:
        what.append("content")
        if module._diff and item["diff"]:
            before[dest] = to_native(old, errors="surrogate_then_replace")
    if old is not None:
        what += attribute_changes(module, dest, item)
    if not what:
        return
    changed.append({"path": dest, "what": what})
    if module.check_mode:
        return
    if "created" in what or "content" in what:
        fd, tmp = tempfile.mkstemp(prefix=".labctl-", dir=parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            if old is None:
                # a new file is never wider than wanted, not even for a moment (it may hold a key):
                # mkstemp made it 0600; atomic_move would give a new file 0644 first
                os.chmod(tmp, _mode(item["mode"]) if item.get("mode") is not None else 0o644)
                os.rename(tmp, dest)
            else:
                module.atomic_move(tmp, dest, unsafe_writes=module.params["unsafe_writes"])
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
    set_attributes(module, dest, item)


def main():
    attrs = dict(owner=dict(type="str"), group=dict(type="str"), mode=dict(type="raw"))
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type="list", elements="dict", default=[],
                             options=dict(path=dict(type="path", required=True), **attrs)),
            files=dict(type="list", elements="dict", default=[],
                       options=dict(dest=dict(type="path", required=True), content=dict(type="str"),
                                    diff=dict(type="bool", default=True), **attrs)),
            unsafe_writes=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    changed, before = [], {}
    for item in module.params["directories"]:
        ensure_directory(module, item, changed)
    for item in module.params["files"]:
        ensure_file(module, item, changed, before)
    result = dict(changed=bool(changed), changed_paths=changed)
    if module._diff:
        result["before"] = before
    module.exit_json(**result)


if __name__ == "__main__":
    main()
