#!/usr/bin/env bash
# README command (b): set up this Debian 12 machine (apt packages, .venv) and run the tests.
#   scripts/test.sh                 the default tier (unit, captured trees, real kernel, DPDK, QEMU guest)
#   VIO4WD_TEST_TIER=all scripts/test.sh   also the slow lab-VM tier: lab VM tests, then every molecule
#                                          scenario (scripts/molecule.sh; about 5-11 min each under TCG)
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
if [ "${VIO4WD_TEST_TIER:-default}" = all ] && [ $rc = 0 ]; then
  VIO4WD_MOLECULE_SKIP_FAST=1 bash scripts/molecule.sh || rc=1  # its fast tier ran in pytest above
fi
exit $rc
