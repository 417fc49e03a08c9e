#!/usr/bin/python
# -*- coding: utf-8 -*-
# BSD-3-Clause
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: hugepages
short_description: Reserve hugepages per NUMA node, mount hugetlbfs once per size, set vm.max_map_count
description:
  - Thin wrapper over C(vio4wd_tool.hugepages.hugepages_action) (the same action as
    C(vio4wd-tool hugepages)).
  - Reserves pages at runtime per NUMA node and size, mounts hugetlbfs once per page size and
    persists the mounts as systemd mount units, creates C(<mount>/libvirt) owned by the qemu user,
    and keeps C(vm.max_map_count) above twice the pages (persisted in C(/etc/sysctl.d)).
  - Needs the vio4wd library in the interpreter that runs it (role C(vio4wd_install)).
version_added: "0.1.0"
author: vio4wd maintainers
options:
  pages:
    description:
      - Pages to hold, each C({size, node, count}); C(size) is C(2M) or C(1G); C(node) null means
        the only node of a single-node host. Empty with I(plan) set takes the plan's pages.
    type: list
    elements: dict
    default: []
  plan:
    description: A C(vio4wd.plan/1) file whose C(hugepages_2m)/C(hugepages_1g) per node are reserved.
    type: path
  plan_data:
    description:
      - The plan itself (the C(plan) return value of M(vio4wd.fleet.plan)) instead of a file; lets a
        check-mode run use a plan that was not written.
    type: dict
  mounts:
    description: Mount hugetlbfs per size (2 MiB; 1 GiB when the kernel offers it) and persist it.
    type: bool
    default: true
  mount_2m:
    description: Mount point of the 2 MiB hugetlbfs.
    type: path
    default: /dev/hugepages
  mount_1g:
    description: Mount point of the 1 GiB hugetlbfs.
    type: path
    default: /dev/hugepages-1G
  qemu_user:
    description: C(USER[:GROUP]) owning C(<mount>/libvirt); default libvirt-qemu or qemu with group kvm.
    type: str
  retries:
    description: Reservation read-back attempts.
    type: int
    default: 5
  persist:
    description: Write mount units, sysctl.d and tmpfiles.d files (false is runtime only).
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
- name: Reserve what the plan asks for and mount hugetlbfs
  vio4wd.fleet.hugepages:
    plan: /etc/vio4wd/plan.json

- name: 384 x 2 MiB pages on node 0
  vio4wd.fleet.hugepages:
    pages:
      - {size: 2M, node: 0, count: 384}
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
notes:
  description: The action's notes.
  type: list
  elements: str
  returned: always
data:
  description: The action's facts (pages before/after per pool).
  type: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vio4wd.fleet.plugins.module_utils.vio4wd import run_action

SIZES = {"2M": 2048, "1G": 1048576}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            pages=dict(type="list", elements="dict", default=[], options=dict(
                size=dict(type="str", choices=list(SIZES), default="2M"),
                node=dict(type="int"),
                count=dict(type="int", required=True),
            )),
            plan=dict(type="path"),
            plan_data=dict(type="dict"),
            mounts=dict(type="bool", default=True),
            mount_2m=dict(type="path", default="/dev/hugepages"),
            mount_1g=dict(type="path", default="/dev/hugepages-1G"),
            qemu_user=dict(type="str"),
            retries=dict(type="int", default=5),
            persist=dict(type="bool", default=True),
            root=dict(type="path", default="/"),
        ),
        supports_check_mode=True,
    )
    p = module.params

    def build():
        from vio4wd_tool import hugepages as hp
        from vio4wd_tool.root import Root

        root = Root(p["root"])
        pages = {}
        if p["plan"]:
            plan = p["plan"] if p["root"] == "/" else str(root.path(p["plan"]))
            pages.update(hp.request_from_plan(hp.load_plan_file(plan)))
        if p["plan_data"]:
            pages.update(hp.request_from_plan(p["plan_data"]))
        nodes = hp._node_dirs(root)
        for item in p["pages"]:
            node = item["node"]
            if node is None:
                if len(nodes) > 1:
                    module.fail_json(msg="pages: this host has %d NUMA nodes: give node: N" % len(nodes))
                node = nodes[0] if nodes else None
            pages[(SIZES[item["size"]], node)] = item["count"]
        mounts = {}
        if p["mounts"] and p["plan_data"] and p["plan_data"].get("huge_dir"):
            p["mount_2m"] = p["plan_data"]["huge_dir"]
        if p["mounts"]:
            mounts[hp.SIZE_2M] = p["mount_2m"]
            if root.exists("%s/hugepages-%dkB" % (hp.GLOBAL_DIR, hp.SIZE_1G)):
                mounts[hp.SIZE_1G] = p["mount_1g"]
        req = hp.HugeRequest(pages=pages, mounts=mounts, qemu_user=p["qemu_user"], retries=p["retries"],
                             persist=p["persist"])
        return hp.hugepages_action(root, req)

    run_action(module, build)


if __name__ == "__main__":
    main()
