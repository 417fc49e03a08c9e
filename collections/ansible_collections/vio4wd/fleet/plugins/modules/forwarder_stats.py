#!/usr/bin/python
# -*- coding: utf-8 -*-
# BSD-3-Clause
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: forwarder_stats
short_description: Ask the forwarder's ZeroMQ stats endpoint for its relays' state
description:
  - Sends a C(StatsRequest) through C(vio4wd_tool.fwdctl) (the virtio-forwarder wire protocol) to the
    stats endpoint and returns the decoded relays. Fails when the endpoint does not answer in time,
    so it verifies that a deployed forwarder is up. Read only.
  - Needs the vio4wd library and pyzmq in the interpreter that runs it (role C(vio4wd_install)).
version_added: "0.1.0"
author: vio4wd maintainers
options:
  endpoint:
    description:
      - The stats endpoint.
      - Default C(VIRTIOFWD_ZMQ_STATS_EP) of C(/etc/default/virtioforwarder), else
        C(ipc:///var/run/virtio-forwarder/stats).
    type: str
  timeout:
    description: Seconds to wait for each answer.
    type: float
    default: 3
  retries:
    description: Attempts (1 s apart) before failing, for a forwarder that is still starting.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: The forwarder answers on its stats endpoint
  vio4wd.fleet.forwarder_stats:
  register: stats
"""

RETURN = r"""
status:
  description: The response status (OK or ERROR).
  type: str
  returned: success
relays:
  description: One dict per relay (the RelayState message as a dict).
  type: list
  elements: dict
  returned: success
attempts:
  description: Requests sent until one was answered.
  type: int
  returned: success
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vio4wd.fleet.plugins.module_utils.vio4wd import require_library


def main():
    module = AnsibleModule(
        argument_spec=dict(
            endpoint=dict(type="str"),
            timeout=dict(type="float", default=3.0),
            retries=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    require_library(module)
    from vio4wd_tool import fwdctl

    p = module.params
    endpoint = p["endpoint"] or fwdctl.default_endpoint("stats")
    client = fwdctl.Client(endpoint, timeout=p["timeout"])
    last = None
    for attempt in range(1, max(p["retries"], 1) + 1):
        try:
            reply = fwdctl.stats(client)
        except (fwdctl.Unreachable, fwdctl.ControlError) as e:
            last = str(e)
            time.sleep(1)
            continue
        doc = fwdctl.as_dict(reply)
        module.exit_json(changed=False, endpoint=endpoint, status=doc.get("status", "OK"), attempts=attempt,
                         relays=doc.get("relay", []))
    module.fail_json(msg="the forwarder's stats endpoint %s did not answer after %d attempts: %s"
                         % (endpoint, p["retries"], last))


if __name__ == "__main__":
    main()
