# -*- coding: utf-8 -*-
# BSD-3-Clause
"""Glue between Ansible modules and the vio4wd library (vio4wd_tool).

Every module here is thin: it builds the library's request from its options, lets the library
compute an `ActionResult` (vio4wd_tool.actions), and either reports it (check mode) or applies it
with `actions.execute`.  This file only maps an ActionResult (or the CLI's `--json` output, schema
vio4wd.action/1, for actions whose Python API is not callable yet) onto Ansible's return values:

  changed          exactly the action's `changed` (in check mode: would change)
  diff             one prepared unified diff per changed file (+ one line per non-file change)
  reboot_required  the action's reboot_required
  changes/notes/data/error  as the library reports them
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sys
import traceback

LIB_IMP_ERR = None
try:
    from vio4wd_tool import actions as vio4wd_actions  # noqa: F401
    from vio4wd_tool.root import Root  # noqa: F401

    HAS_VIO4WD = True
except ImportError:  # pragma: no cover - depends on the interpreter
    HAS_VIO4WD = False
    LIB_IMP_ERR = traceback.format_exc()

VENV_HINT = ("the vio4wd library is not importable by {py}: run the vio4wd_install role first and run this "
             "module with ansible_python_interpreter=/opt/vio4wd/venv/bin/python")


def require_library(module):
    if not HAS_VIO4WD:
        module.fail_json(msg=VENV_HINT.format(py=sys.executable), exception=LIB_IMP_ERR)


def _diffs(changes):
    """Ansible diff list from vio4wd.action/1 change dicts."""
    out = []
    for c in changes:
        if c.get("diff"):
            out.append({"prepared": c["diff"]})
        else:
            out.append({"prepared": "# %s%s\n" % (c["what"], " [reboot required]" if c.get("reboot_required") else "")})
    return out


def _respond(module, doc, extra=None):
    """exit_json/fail_json from a vio4wd.action/1 document."""
    ret = {
        "changed": bool(doc.get("changed")),
        "reboot_required": bool(doc.get("reboot_required")),
        "changes": [c["what"] for c in doc.get("changes", [])],
        "notes": doc.get("notes", []),
        "data": doc.get("data", {}),
        "action": doc.get("action"),
    }
    if module._diff and doc.get("changes"):
        ret["diff"] = _diffs(doc["changes"])
    if extra:
        ret.update(extra)
    if doc.get("error"):
        module.fail_json(msg="%s: %s" % (doc.get("action"), doc["error"]), **ret)
    module.exit_json(**ret)


def finish(module, result, extra=None):
    """Apply (or, in check mode, only report) a library ActionResult and exit the module."""
    from vio4wd_tool.actions import execute

    if result.changes and not module.check_mode and os.geteuid() != 0:
        module.fail_json(msg="%s needs root: use become: true" % result.action)
    result = execute(result, check=module.check_mode, progress=False)
    _respond(module, result.to_json(), extra)


def run_action(module, build, extra=None):
    """`build()` -> ActionResult; library refusals (ActionError, bad values) fail the task cleanly.

    `extra`: more return values, or a function of the ActionResult giving them."""
    from vio4wd_tool.actions import ActionError

    require_library(module)
    try:
        result = build()
    except (ActionError, ValueError) as e:
        module.fail_json(msg=str(e))
    if callable(extra):
        extra = extra(result)
    finish(module, result, extra)


def cli_argv(options):
    """{'pages_2m': 384, 'mounts': True, 'vf': ['a', 'b']} -> ['--pages-2m', '384', '--mounts', '--vf', 'a', ...].

    None leaves an option out; False gives --no-NAME (argparse BooleanOptionalAction)."""
    argv = []
    for key in sorted(options):
        value = options[key]
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return argv


def run_cli(module, action, options, root="/", extra=None):
    """Fallback for actions without a callable Python API yet: the library's own CLI with --json,
    in this interpreter (`python -m vio4wd_tool ACTION ... --json [--check]`)."""
    require_library(module)
    argv = [sys.executable, "-m", "vio4wd_tool", action] + cli_argv(options) + ["--json"]
    if root and root != "/":
        argv += ["--root", root]
    if module.check_mode:
        argv.append("--check")
    rc, out, err = module.run_command(argv, environ_update={"PYTHONUNBUFFERED": "1"})
    try:
        doc = json.loads(out)
    except ValueError:
        module.fail_json(msg="vio4wd-tool %s failed (exit %d): %s" % (action, rc, (err or out).strip()[-2000:]),
                         cmd=argv, rc=rc, stdout=out, stderr=err)
    if rc != 0 and not doc.get("error"):
        doc["error"] = (err or "exit %d" % rc).strip()
    extra = dict(extra or {}, cmd=argv)
    _respond(module, doc, extra)
