#!/usr/bin/env bash
# Run the molecule scenarios on lab VMs one after another (CI: after the fast tier).
#   scripts/molecule.sh                 every scenario, in the order below
#   scripts/molecule.sh host check      only these
#   VIO4WD_MOLECULE_FAST=1 scripts/molecule.sh   only the fast tier (ansible-lint, module tests, syntax)
#   VIO4WD_MOLECULE_SKIP_FAST=1 scripts/molecule.sh   only the scenarios (the fast tier ran already)
#   VIO4WD_LAB_GUEST=testpmd scripts/molecule.sh site  site's ping peer: dpdk-testpmd icmpecho
#       instead of virtio-forwarder-echo (installs dpdk-dev in the VM: minutes more)
# Every scenario boots its own lab VM from the one cached base image (vio4wd-tool lab image) and
# destroys it; timings go to $TMPDIR/vio4wd-molecule-times (one line per scenario) and the summary at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

all=(host check igb_uio sriov tuning site)
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=("${all[@]}")

for tool in ansible-playbook ansible-lint molecule; do
  command -v "$tool" >/dev/null || { echo "$tool missing: .venv/bin/pip install -e '.[ansible]'" >&2; exit 2; }
done

# --- fast tier first: failures surface in seconds, not after a VM boot
t0=$(date +%s)
if [ "${VIO4WD_MOLECULE_SKIP_FAST:-0}" != 1 ]; then
  say "fast tier: ansible-lint (production profile), module tests, syntax checks"
  ansible-lint || exit 1
  python -m pytest -q tests/ansible || exit 1
fi
[ "${VIO4WD_MOLECULE_FAST:-0}" = 1 ] && exit 0

say "lab base image (cached)"
python -m vio4wd_tool.lab image || exit 1

# Build the targets' wheel from a snapshot, so that edits made in this tree while the scenarios run
# (other work in progress) do not change the library between converge and idempotence.
if [ -z "${VIO4WD_PROJECT_DIR:-}" ]; then
  snap=$(mktemp -d "${TMPDIR:-/tmp}/vio4wd-snapshot.XXXXXX")
  trap 'rm -rf "$snap"' EXIT
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard -- pyproject.toml setup.py vio4wd_tool forwarder README.md \
      | xargs -0 tar -cf - | tar -xf - -C "$snap"
  else
    cp -a pyproject.toml setup.py vio4wd_tool forwarder README.md "$snap"/
  fi
  export VIO4WD_PROJECT_DIR=$snap
fi

times=${TMPDIR:-/tmp}/vio4wd-molecule-times
: > "$times"
failed=()
for s in "${scenarios[@]}"; do
  say "molecule test -s $s"
  start=$(date +%s)
  if molecule test -s "$s"; then rc=ok; else rc=FAILED; failed+=("$s"); fi
  echo "$s $rc $(( $(date +%s) - start ))s" | tee -a "$times"
done
say "scenarios ($(( $(date +%s) - t0 ))s in all):"
cat "$times" >&2
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}" >&2; exit 1; }
