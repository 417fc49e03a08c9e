#!/usr/bin/env bash
# README command (b): set up this Debian 12 machine (apt packages, .venv) and run the tests.
#   scripts/test.sh                 what CI runs (.ci/run): the pytest tier (unit, captured trees,
#                                   real kernel, DPDK vdevs, QEMU guest, ansible-lint and module
#                                   tests), then every molecule scenario on lab VMs (scripts/molecule.sh:
#                                   the cached lab image, then one VM per scenario; about 45-60 min)
#   VIO4WD_TEST_TIER=fast scripts/test.sh   only the pytest tier (about 5 min)
#   VIO4WD_TEST_TIER=all scripts/test.sh    also the lab-VM pytest tests (lab vm/host end to end)
#   extra arguments go to pytest, e.g. VIO4WD_TEST_TIER=fast scripts/test.sh -k doctor
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
tier=${VIO4WD_TEST_TIER:-ci}
case "$tier" in
  fast|ci) markers="not lab" ;;
  all) markers="" ;;
  *) echo "VIO4WD_TEST_TIER=$tier: use fast, ci (the default) or all" >&2; exit 2 ;;
esac
t0=$(date +%s)
set +e
if [ -n "$markers" ]; then
  .venv/bin/python -m pytest -m "$markers" "$@"
else
  .venv/bin/python -m pytest "$@"
fi
rc=$?
set -e
echo "pytest tier: $(( $(date +%s) - t0 )) s, exit $rc" >&2
[ $rc = 5 ] && { echo "no tests collected" >&2; exit 1; }
if [ "$tier" != fast ] && [ $rc = 0 ]; then
  VIO4WD_MOLECULE_SKIP_FAST=1 bash scripts/molecule.sh || rc=1  # its fast tier ran in pytest above
fi
exit $rc
