#!/usr/bin/env bash
# README command (a): set up this Debian 12 machine and run the main job on it:
# vio4wd-tool doctor against this very host (the lab VM run comes with `vio4wd-tool lab`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo
echo "==> vio4wd-tool doctor on $(hostname)"
set +e
.venv/bin/vio4wd-tool doctor "$@"
rc=$?
set -e
echo
echo "doctor exit code $rc (0: no FAIL, 1: FAIL found). Try: .venv/bin/vio4wd-tool doctor --json | less"
exit 0
