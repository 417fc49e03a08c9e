#!/usr/bin/python
# -*- coding: utf-8 -*-
# BSD-3-Clause
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: doctor
short_description: Run the vio4wd doctor checks on a host and return the result
description:
  - Runs every registered vio4wd doctor check (C(vio4wd_tool.doctor.run)) against the host's live
    state and the intent in C(/etc/default/virtioforwarder), and returns the C(vio4wd.doctor/1)
    document (see docs/doctor-json.md). Read only; never reports a change.
  - Needs the vio4wd library in the interpreter that runs it (role C(vio4wd_install)).
version_added: "0.1.0"
author: vio4wd maintainers
options:
  only:
    description: Run only checks with these ids or id prefixes.
    type: list
    elements: str
  config:
    description: Forwarder config the intent is read from.
    type: path
    default: /etc/default/virtioforwarder
  root:
    description: Check a captured tree below this directory instead of the live host.
    type: path
    default: /
  driver:
    description:
      - The DPDK driver the host is meant for, over the config's (a host not rolled out yet has no
        config, and the default intent is igb_uio).
    type: str
    choices: [igb_uio, vfio-pci]
  fail_on_fail:
    description: Fail the task when a check reports FAIL.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Doctor
  vio4wd.fleet.doctor:
  register: doctor
"""

RETURN = r"""
doctor:
  description: The vio4wd.doctor/1 document.
  type: dict
  returned: always
ok:
  description: No check reported FAIL.
  type: bool
  returned: always
summary:
  description: Counts per status (PASS, WARN, FAIL, SKIP).
  type: dict
  returned: always
failures:
  description: The FAIL results (id, subject, finding, fix).
  type: list
  elements: dict
  returned: always
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vio4wd.fleet.plugins.module_utils.vio4wd import require_library


def main():
    module = AnsibleModule(
        argument_spec=dict(
            only=dict(type="list", elements="str"),
            config=dict(type="path", default="/etc/default/virtioforwarder"),
            root=dict(type="path", default="/"),
            driver=dict(type="str", choices=["igb_uio", "vfio-pci"]),
            fail_on_fail=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    require_library(module)
    from vio4wd_tool import doctor
    from vio4wd_tool import intent as im
    from vio4wd_tool.host import Host

    p = module.params
    t0 = time.monotonic()
    host = Host(p["root"])
    try:
        intent = im.from_config(host.root, p["config"])
    except ValueError as e:
        module.fail_json(msg="%s: %s" % (p["config"], e))
    if p["driver"]:
        intent.driver = p["driver"]
    results = doctor.run(host, intent, p["only"])
    doc = doctor.to_json(host, intent, results, time.monotonic() - t0)
    failed = [{k: c[k] for k in ("id", "subject", "finding", "fix")} for c in doc["checks"] if c["status"] == "FAIL"]
    ret = dict(changed=False, doctor=doc, ok=doc["ok"], summary=doc["summary"], failures=failed)
    if p["fail_on_fail"] and not doc["ok"]:
        module.fail_json(msg="doctor: %d check(s) FAIL: %s" % (len(failed), ", ".join(
            "%s%s" % (f["id"], "(%s)" % f["subject"] if f["subject"] else "") for f in failed)), **ret)
    module.exit_json(**ret)


if __name__ == "__main__":
    main()
