#!/usr/bin/python
# -*- coding: utf-8 -*-
# BSD-3-Clause
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: action
short_description: Run one vio4wd host action (plan, grub, igb-uio, vfs, pin, config, ...)
description:
  - Runs a C(vio4wd-tool) host action with C(--json) (and C(--check) in check mode) in the
    interpreter that runs this module, and maps its C(vio4wd.action/1) result onto Ansible's
    C(changed), C(diff) and a C(reboot_required) return value. No logic of the action lives here.
  - Used for the actions whose Python API is not wrapped by a dedicated module of this collection.
  - Needs the vio4wd library in that interpreter (role C(vio4wd_install)).
version_added: "0.1.0"
author: vio4wd maintainers
options:
  name:
    description: The C(vio4wd-tool) sub-command.
    type: str
    required: true
  options:
    description:
      - The sub-command's options, C(--) and dashes added to the keys (C(pages_2m) -> C(--pages-2m));
        C(true) gives the bare flag, C(false) C(--no-NAME), a list repeats the option, null omits it.
    type: dict
    default: {}
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
  vio4wd.fleet.action:
    name: grub
    options:
      plan: /etc/vio4wd/plan.json
"""

RETURN = r"""
reboot_required:
  description: Whether a reboot is needed for the change to take effect.
  type: bool
  returned: always
changes:
  description: One line per change made (or, in check mode, that would be made).
  type: list
  elements: str
  returned: always
data:
  description: The action's own facts (the plan, the VF table, ...).
  type: dict
  returned: always
cmd:
  description: The command that ran.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vio4wd.fleet.plugins.module_utils.vio4wd import run_cli


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            options=dict(type="dict", default={}),
            root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    name = module.params["name"]
    if not name.replace("-", "").replace("_", "").isalnum() or name.startswith("-"):
        module.fail_json(msg="name %r: not a vio4wd-tool sub-command" % name)
    run_cli(module, name, module.params["options"], module.params["root"])


if __name__ == "__main__":
    main()
