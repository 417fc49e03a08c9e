#!/usr/bin/python
# -*- coding: utf-8 -*-
# BSD-3-Clause
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: forwarder_config
short_description: Render /etc/default/virtioforwarder from the plan
description:
  - Thin wrapper over C(vio4wd_tool.fwdconfig.config_action) (the same action as C(vio4wd-tool
    config)), which renders every variable the forwarder reads from the plan, keeps the existing
    file's other values, validates the result with the forwarder's own parser and writes it atomically.
  - Needs the vio4wd library in the interpreter that runs it (role C(vio4wd_install)).
version_added: "0.1.0"
author: vio4wd maintainers
options:
  plan:
    description: The plan file (C(vio4wd.plan/1)).
    type: path
    default: /etc/vio4wd/plan.json
  plan_data:
    description: The plan itself (the C(plan) return value of M(vio4wd.fleet.plan)); wins over I(plan).
    type: dict
  path:
    description: The forwarder config to write.
    type: path
    default: /etc/default/virtioforwarder
  fresh:
    description: Ignore the existing file's values (start from the defaults).
    type: bool
    default: false
  root:
    description: Act on a captured tree below this directory instead of the live host (tests).
    type: path
    default: /
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Forwarder config from the plan
  vio4wd.fleet.forwarder_config:
    plan: /etc/vio4wd/plan.json
"""

RETURN = r"""
data:
  description: The file, workers, main lcore, static VFs and CPU pins as rendered.
  type: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vio4wd.fleet.plugins.module_utils.vio4wd import run_action


def main():
    module = AnsibleModule(
        argument_spec=dict(
            plan=dict(type="path", default="/etc/vio4wd/plan.json"),
            plan_data=dict(type="dict"),
            path=dict(type="path", default="/etc/default/virtioforwarder"),
            fresh=dict(type="bool", default=False),
            root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    p = module.params

    def build():
        from vio4wd_tool import fwdconfig
        from vio4wd_tool.plan import load_plan
        from vio4wd_tool.root import Root

        root = Root(p["root"])
        plan = p["plan_data"] or load_plan(p["plan"], root=root)
        # check=True: config_action only computes; run_action applies it (or not, in check mode)
        return fwdconfig.config_action(root, plan, path=p["path"], check=True, fresh=p["fresh"])

    run_action(module, build)


if __name__ == "__main__":
    main()
