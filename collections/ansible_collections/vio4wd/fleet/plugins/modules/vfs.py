#!/usr/bin/python
# -*- coding: utf-8 -*-
# BSD-3-Clause
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: vfs
short_description: Create SR-IOV VFs on a PF and bind them to igb_uio or vfio-pci, persistently
description:
  - Thin wrapper over C(vio4wd_tool.sriov.create_action) and C(bind_action) (C(vio4wd-tool vfs
    create / bind)); it writes 0 then N to C(sriov_numvfs) when changing a non-zero count, waits for
    the VF devices, sets VF MAC/trust/spoofchk, binds via C(driver_override), rolls back on failure,
    refuses devices carrying addresses or routes unless I(force), and persists through a oneshot unit.
  - With I(state=created) only the VFs are created; with I(state=bound) they are also bound to I(driver).
  - Needs the vio4wd library in the interpreter that runs it (role C(vio4wd_install)).
version_added: "0.1.0"
author: vio4wd maintainers
options:
  pf:
    description: The PF (interface name or PCI address).
    type: str
    required: true
  count:
    description: Number of VFs.
    type: int
    required: true
  driver:
    description: Driver to bind the VFs to (with I(state=bound)).
    type: str
    choices: [igb_uio, vfio-pci]
    default: igb_uio
  bind:
    description: VF indexes to bind (default all of them).
    type: list
    elements: int
  macs:
    description: VF index -> MAC address.
    type: dict
  trust:
    description: VF trust setting.
    type: bool
  spoofchk:
    description: VF spoof checking.
    type: bool
  state:
    description: C(created) or C(bound).
    type: str
    choices: [created, bound]
    default: bound
  force:
    description: Bind even devices whose interface carries addresses or routes.
    type: bool
    default: false
  persist:
    description: Replay creation and binding at boot (oneshot unit).
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the VF devices.
    type: float
    default: 30
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
- name: Two VFs of ens1f0 on vfio-pci
  vio4wd.fleet.vfs:
    pf: ens1f0
    count: 2
    driver: vfio-pci
"""

RETURN = r"""
vfs:
  description: PCI addresses of the VFs (known once they exist).
  type: list
  elements: str
  returned: always
reboot_required:
  description: Always false for VFs.
  type: bool
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vio4wd.fleet.plugins.module_utils.vio4wd import require_library, _respond


def main():
    module = AnsibleModule(
        argument_spec=dict(
            pf=dict(type="str", required=True),
            count=dict(type="int", required=True),
            driver=dict(type="str", choices=["igb_uio", "vfio-pci"], default="igb_uio"),
            bind=dict(type="list", elements="int"),
            macs=dict(type="dict"),
            trust=dict(type="bool"),
            spoofchk=dict(type="bool"),
            state=dict(type="str", choices=["created", "bound"], default="bound"),
            force=dict(type="bool", default=False),
            persist=dict(type="bool", default=True),
            timeout=dict(type="float", default=30.0),
            root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    require_library(module)
    import os

    from vio4wd_tool import sriov
    from vio4wd_tool.actions import ActionError, execute
    from vio4wd_tool.root import Root

    p = module.params
    root = Root(p["root"])
    if not module.check_mode and os.geteuid() != 0:
        module.fail_json(msg="vfs needs root: use become: true")
    docs = []
    vfs = []
    try:
        created = sriov.create_action(root, p["pf"], p["count"], p["macs"], p["trust"], p["spoofchk"],
                                      p["timeout"], persist=p["persist"])
        created = execute(created, check=module.check_mode, progress=False)
        docs.append(created.to_json())
        if not created.error:
            pf = created.data["pf"]
            indexes = p["bind"] if p["bind"] is not None else list(range(p["count"]))
            vfs = [sriov.vf_addr(root, pf, i) for i in range(p["count"])]
            missing = [i for i in indexes if i >= p["count"] or vfs[i] is None]
            if p["state"] == "bound" and indexes:
                if missing and module.check_mode:
                    # the VFs do not exist yet: creating them is already reported; binding follows
                    docs.append({"action": "vfs", "changed": True, "reboot_required": False, "notes": [],
                                 "data": {}, "error": None,
                                 "changes": [{"what": "bind VF %d of %s to %s" % (i, pf, p["driver"]),
                                              "diff": "", "reboot_required": False} for i in indexes]})
                elif missing:
                    module.fail_json(msg="VF index(es) %s of %s do not exist (count %d)" % (missing, pf, p["count"]))
                else:
                    bound = sriov.bind_action(root, [vfs[i] for i in indexes], p["driver"], force=p["force"],
                                              persist=p["persist"])
                    docs.append(execute(bound, check=module.check_mode, progress=False).to_json())
    except (ActionError, ValueError) as e:
        module.fail_json(msg=str(e), vfs=[v for v in vfs if v])
    merged = {"action": "vfs", "changed": any(d["changed"] for d in docs),
              "reboot_required": any(d["reboot_required"] for d in docs),
              "changes": [c for d in docs for c in d["changes"]], "notes": [n for d in docs for n in d["notes"]],
              "data": {"create": docs[0]["data"], "bind": docs[1]["data"] if len(docs) > 1 else {}},
              "error": next((d["error"] for d in docs if d.get("error")), None)}
    _respond(module, merged, {"vfs": [v for v in vfs if v]})


if __name__ == "__main__":
    main()
