#!/usr/bin/python
# -*- coding: utf-8 -*-
# BSD-3-Clause
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: plan
short_description: Compute the per-host NUMA plan and save it for the other vio4wd actions
description:
  - Thin wrapper over C(vio4wd_tool.plan.plan_action) (the same action as C(vio4wd-tool plan)); the
    intent is built by the library's own C(cli.intent_from_args) from these options and the
    forwarder config. Writes the C(vio4wd.plan/1) file atomically; returns the plan as C(plan).
  - Needs the vio4wd library in the interpreter that runs it (role C(vio4wd_install)).
version_added: "0.1.0"
author: vio4wd maintainers
options:
  path:
    description: The plan file.
    type: path
    default: /etc/vio4wd/plan.json
  relays:
    description: Number of relays.
    type: int
  vfs:
    description: VFs as C(PCI[=RELAY]) or DPDK devargs.
    type: list
    elements: str
    default: []
  pfs:
    description: The VFs' physical functions (interface or PCI address); their node and VFs feed the plan.
    type: list
    elements: str
    default: []
  driver:
    description: VF driver.
    type: str
    choices: [igb_uio, vfio-pci]
  jumbo:
    description: Jumbo frames / TSO (more 2 MiB pages).
    type: bool
  node:
    description: NUMA node for workers, VFs and guests.
    type: int
  cpus:
    description: Worker CPUs (list like C(2-3) or a C(0x) mask).
    type: str
  main_lcore:
    description: The forwarder's main lcore.
    type: int
  workers:
    description: Worker CPUs wanted (default one per relay).
    type: int
  guest_mem:
    description: Guest memory sizes backed by 1 GiB pages (C(4G)), once for all guests or once per relay.
    type: list
    elements: str
    default: []
  guest_vcpus:
    description: vCPUs per guest.
    type: int
    default: 1
  huge_dir:
    description: The forwarder's 2 MiB hugetlbfs mount.
    type: path
  vhost_client:
    description: Forwarder in vhost-user client mode.
    type: bool
  config:
    description: Forwarder config the rest of the intent is read from.
    type: path
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
- name: Plan two relays on the node of PF ens1f0
  vio4wd.fleet.plan:
    relays: 2
    pfs: [ens1f0]
    driver: vfio-pci
"""

RETURN = r"""
plan:
  description: The vio4wd.plan/1 document (also when nothing changed).
  type: dict
  returned: always
reboot_required:
  description: Always false for the plan itself.
  type: bool
  returned: always
"""

import argparse

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vio4wd.fleet.plugins.module_utils.vio4wd import run_action


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/vio4wd/plan.json"),
            relays=dict(type="int"),
            vfs=dict(type="list", elements="str", default=[]),
            pfs=dict(type="list", elements="str", default=[]),
            driver=dict(type="str", choices=["igb_uio", "vfio-pci"]),
            jumbo=dict(type="bool"),
            node=dict(type="int"),
            cpus=dict(type="str"),
            main_lcore=dict(type="int"),
            workers=dict(type="int"),
            guest_mem=dict(type="list", elements="str", default=[]),
            guest_vcpus=dict(type="int", default=1),
            huge_dir=dict(type="path"),
            vhost_client=dict(type="bool"),
            config=dict(type="path"),
            root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    p = module.params

    def build():
        from vio4wd_tool import plan as pl
        from vio4wd_tool.cli import UsageError, intent_from_args
        from vio4wd_tool.cpu import parse_cpulist, parse_mask
        from vio4wd_tool.root import Root

        root = Root(p["root"])
        # the CLI's own intent builder: the same validation and error messages as vio4wd-tool plan
        ns = argparse.Namespace(config=p["config"], driver=p["driver"], jumbo=p["jumbo"], relays=p["relays"],
                                numa_node=p["node"], cpus=p["cpus"], main_lcore=p["main_lcore"], vf=p["vfs"],
                                huge_dir=p["huge_dir"], vhost_client=p["vhost_client"], guest_1g_pages=None)
        try:
            intent = intent_from_args(root, ns)
            cpus = None
            if p["cpus"]:
                cpus = parse_mask(p["cpus"]) if p["cpus"].lower().startswith("0x") else parse_cpulist(p["cpus"])
        except UsageError as e:
            module.fail_json(msg=str(e))
        # check=True: plan_action only computes; run_action applies it (or not, in check mode)
        res = pl.plan_action(root, intent, path=p["path"], check=True, pfs=p["pfs"], cpus=cpus,
                             main_lcore=p["main_lcore"], nworkers=p["workers"],
                             guest_mem_kb=[pl._size_kb(s) for s in p["guest_mem"]], guest_vcpus=p["guest_vcpus"])
        return res

    run_action(module, build, extra=lambda res: {"plan": res.data})


if __name__ == "__main__":
    main()
