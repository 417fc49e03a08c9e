#!/usr/bin/python
# -*- coding: utf-8 -*-
# BSD-3-Clause
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: igb_uio
short_description: Build igb_uio with DKMS for the running kernel, load it and persist it
description:
  - Thin wrapper over C(vio4wd_tool.kmod.igb_uio_action) (the same action as C(vio4wd-tool
    igb-uio)), which builds igb_uio from Debian's dpdk-kmods-dkms (or a dpdk-kmods checkout) for the
    kernel, checks its vermagic, loads uio then igb_uio and lists both in C(/etc/modules-load.d).
  - The running kernel's headers (C(linux-headers-$(uname -r))) must be installed.
  - Needs the vio4wd library in the interpreter that runs it (role C(vio4wd_install)).
version_added: "0.1.0"
author: vio4wd maintainers
options:
  kernel:
    description: Build for this kernel release (default the running one).
    type: str
  source:
    description: A dpdk-kmods checkout to build with kbuild instead of DKMS.
    type: path
  rebuild:
    description: Rebuild even when a matching module exists.
    type: bool
    default: false
  load:
    description: Load uio and igb_uio.
    type: bool
    default: true
  persist:
    description: Load both at every boot.
    type: bool
    default: true
  root:
    description: Act on a captured tree below this directory instead of the live host (tests; check only).
    type: path
    default: /
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Igb_uio for the running kernel
  vio4wd.fleet.igb_uio:
"""

RETURN = r"""
data:
  description: The kernel built for, the running kernel, Secure Boot state and the module file.
  type: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vio4wd.fleet.plugins.module_utils.vio4wd import run_action


def main():
    module = AnsibleModule(
        argument_spec=dict(
            kernel=dict(type="str"),
            source=dict(type="path"),
            rebuild=dict(type="bool", default=False),
            load=dict(type="bool", default=True),
            persist=dict(type="bool", default=True),
            root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    p = module.params

    def build():
        from vio4wd_tool import kmod
        from vio4wd_tool.root import Root

        return kmod.igb_uio_action(Root(p["root"]), p["kernel"], p["load"], p["rebuild"], p["source"], p["persist"])

    run_action(module, build)


if __name__ == "__main__":
    main()
