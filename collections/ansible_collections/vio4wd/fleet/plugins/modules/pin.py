#!/usr/bin/python
# -*- coding: utf-8 -*-
# BSD-3-Clause
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pin
short_description: Keep IRQs (and optionally every service) off the plan's worker CPUs
description:
  - Thin wrapper over C(vio4wd_tool.irq.pin_action) (the same action as C(vio4wd-tool pin)), which
    moves IRQ affinity off the worker CPUs, sets C(default_smp_affinity), bans the workers in
    irqbalance (and restarts it) and optionally sets systemd C(CPUAffinity) for housekeeping.
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
  irqs:
    description: Move IRQs off the worker CPUs and set default_smp_affinity.
    type: bool
    default: true
  irqbalance:
    description: Ban the worker CPUs in irqbalance's config and restart it.
    type: bool
    default: true
  cpu_affinity:
    description: systemd CPUAffinity, services on housekeeping CPUs (takes effect at the next boot).
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
- name: Pin IRQs off the workers
  vio4wd.fleet.pin:
    plan: /etc/vio4wd/plan.json
"""

RETURN = r"""
reboot_required:
  description: Whether a change takes effect only at the next boot (CPUAffinity).
  type: bool
  returned: always
data:
  description: The CPUs IRQs may use and the banned (worker) CPUs.
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
            irqs=dict(type="bool", default=True),
            irqbalance=dict(type="bool", default=True),
            cpu_affinity=dict(type="bool", default=False),
            root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    p = module.params

    def build():
        from vio4wd_tool import irq
        from vio4wd_tool.plan import load_plan
        from vio4wd_tool.root import Root

        root = Root(p["root"])
        plan = p["plan_data"] or load_plan(p["plan"], root=root)
        # check=True: pin_action only computes; run_action applies it (or not, in check mode)
        return irq.pin_action(root, plan, irqs=p["irqs"], irqbalance=p["irqbalance"],
                              cpu_affinity=p["cpu_affinity"], check=True)

    run_action(module, build)


if __name__ == "__main__":
    main()
