#!/usr/bin/env bash
# README command (b): set up this Debian 12 machine (apt packages, .venv) and run the tests.
#   scripts/test.sh                 the default tier (unit, captured trees, real kernel, DPDK, QEMU guest)
#   VIO4WD_TEST_TIER=all scripts/test.sh   also the slow lab-VM tier (builds/boots the lab VM)
#   extra arguments go to pytest, e.g. scripts/test.sh -k doctor
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
markers="not lab"
[ "${VIO4WD_TEST_TIER:-default}" = all ] && markers=""
set +e
if [ -n "$markers" ]; then
  .venv/bin/python -m pytest -m "$markers" "$@"
else
  .venv/bin/python -m pytest "$@"
fi
rc=$?
set -e
[ $rc = 5 ] && { echo "no tests collected" >&2; exit 1; }
exit $rc
