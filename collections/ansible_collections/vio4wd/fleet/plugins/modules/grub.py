#!/usr/bin/python
# -*- coding: utf-8 -*-
# BSD-3-Clause
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: grub
short_description: Put the plan's kernel args into /etc/default/grub and regenerate the boot config
description:
  - Thin wrapper over C(vio4wd_tool.grub.grub_action) (the same action as C(vio4wd-tool grub)),
    a token-level edit of C(GRUB_CMDLINE_LINUX) keeping foreign tokens, regeneration with the
    distribution's tool, and C(reboot_required) by comparing with C(/proc/cmdline).
  - Needs the vio4wd library in the interpreter that runs it (role C(vio4wd_install)).
version_added: "0.1.0"
author: vio4wd maintainers
options:
  plan:
    description: The plan file (C(vio4wd.plan/1)) whose C(kernel_args) are wanted.
    type: path
    default: /etc/vio4wd/plan.json
  plan_data:
    description: The plan itself (the C(plan) return value of M(vio4wd.fleet.plan)); wins over I(plan).
    type: dict
  pages_2m:
    description: Boot-time 2 MiB pages (overrides the plan).
    type: int
  pages_1g:
    description: Boot-time 1 GiB pages (overrides the plan; 0 drops them).
    type: int
  driver:
    description: VF driver for the IOMMU args (default the plan's).
    type: str
    choices: [igb_uio, vfio-pci]
  isolation:
    description: Manage isolcpus/nohz_full/rcu_nocbs/irqaffinity.
    type: bool
    default: true
  extra_args:
    description: More kernel args to manage (added after the plan's).
    type: list
    elements: str
    default: []
  regenerate:
    description: Regenerate grub.cfg / BLS entries.
    type: bool
    default: true
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
- name: Kernel args from the plan
  vio4wd.fleet.grub:
    plan_data: "{{ plan_result.plan }}"
  register: grub
"""

RETURN = r"""
reboot_required:
  description: The running kernel lacks some of the wanted args (a reboot applies them).
  type: bool
  returned: always
data:
  description: The file, the resulting GRUB_CMDLINE_LINUX, the args, the tool and what the running kernel lacks.
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
            pages_2m=dict(type="int"),
            pages_1g=dict(type="int"),
            driver=dict(type="str", choices=["igb_uio", "vfio-pci"]),
            isolation=dict(type="bool", default=True),
            extra_args=dict(type="list", elements="str", default=[]),
            regenerate=dict(type="bool", default=True),
            root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    p = module.params

    def build():
        from vio4wd_tool import grub
        from vio4wd_tool.plan import load_plan
        from vio4wd_tool.root import Root

        root = Root(p["root"])
        plan = p["plan_data"] or load_plan(p["plan"], root=root)
        want = grub.args_for(root, plan, pages_2m=p["pages_2m"], pages_1g=p["pages_1g"], driver=p["driver"],
                             isolation=p["isolation"]) + list(p["extra_args"])
        # check=True: grub_action only computes; run_action applies it (or not, in check mode)
        return grub.grub_action(root, want, check=True, regenerate=p["regenerate"])

    run_action(module, build)


if __name__ == "__main__":
    main()
