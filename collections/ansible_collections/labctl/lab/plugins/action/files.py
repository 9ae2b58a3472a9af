# labctl: the controller side of labctl.lab.files -- render templates, read controller files,
# then ONE module run on the host compares and writes them all.

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import lookup_loader

_SOURCES = ("template", "src", "content")
_ATTRS = ("owner", "group", "mode")

class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("directories", "files", "owner", "group", "directory_mode", "unsafe_writes"))

    def _content(self, index, item, task_vars):
        given = [k for k in _SOURCES if item.get(k) is not None]
        if len(given) > 1:
            raise AnsibleActionFail("files[%d] (%s): give at most one of template, src or content; got %s"
                                    % (index, item.get("dest"), ", ".join(given)))
        if not given:
            return None  # attributes only: the file must exist, its text is left alone
        kind = given[0]
        if kind == "content":
            return str(item["content"])
        if kind == "template":
            # the same lookup `labctl render` uses, so provision writes exactly what render shows
            lookup = lookup_loader.get("ansible.builtin.template", loader=self._loader, templar=self._templar)
            return lookup.run([item["template"]], variables=task_vars)[0]
        path = self._find_needle("files", item["src"])
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8")
        except UnicodeDecodeError as e:
            raise AnsibleActionFail("files[%d] (%s): %s is not UTF-8 text: %s"
                                    % (index, item.get("dest"), path, e)) from e

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        defaults = {k: args.get(k) for k in ("owner", "group")}
        unknown = [k for item in (args.get("files") or []) for k in item
                   if k not in ("dest", "diff", *_SOURCES, *_ATTRS)]
        if unknown:
            raise AnsibleActionFail("files: unknown key(s) %s; allowed: dest, template, src, content, owner, group, "
                                    "mode, diff" % ", ".join(sorted(set(unknown))))
        files = []
        for i, item in enumerate(args.get("files") or []):
            if not item.get("dest"):
                raise AnsibleActionFail("files[%d]: dest is required" % i)
            entry = {"dest": item["dest"], "diff": bool(item.get("diff", True))}
            content = self._content(i, item, task_vars)
            if content is not None:
                entry["content"] = content
            for k in _ATTRS:
                value = item.get(k, defaults.get(k))
                if value is not None:
                    entry[k] = value
            files.append(entry)
        directories = []
        for item in args.get("directories") or []:
            # a bare path takes the task's owner, group and directory_mode
            item = {"path": item, "mode": args.get("directory_mode")} if isinstance(item, str) else item
            entry = {k: item.get(k, defaults.get(k)) for k in ("path", *_ATTRS)}
            directories.append({k: v for k, v in entry.items() if v is not None})
        wanted = {f["dest"]: f.get("content") for f in files}
        res = self._execute_module(
            module_name="labctl.lab.files",
            module_args={"directories": directories, "files": files,
                         "unsafe_writes": bool(args.get("unsafe_writes", False))},
            task_vars=task_vars,
        )
        # the module's arguments hold every file's text (config.toml carries the registry
        # password): never hand them back to the callbacks and event logs
        res.pop("invocation", None)
        before = res.pop("before", None) or {}
        if self._task.diff and before:
            res["diff"] = [{"before_header": dest, "after_header": dest, "before": text, "after": wanted[dest]}
                           for dest, text in before.items()]
        result.update(res)
        return result
