#!/usr/bin/env bash
# Tool virtualenvs for the offline Terraform checks in tests/test_infra.py.
#
# python-hcl2 and checkov both ship a top-level module named `hcl2` (checkov
# vendors its own fork), so one virtualenv cannot hold both: each gets its own.
# Each leaves a stamp naming its pinned requirement, so this reruns only when a
# pin changes. Called from devstack/setup.sh; safe to run on its own.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*" >&2; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

HCL_REQ="python-hcl2==8.1.4"
CHECKOV_REQ="checkov==3.3.30"

python=""
for cand in python3.11 python3.12 python3; do
  if command -v "$cand" >/dev/null 2>&1; then python="$cand"; break; fi
done
[ -n "$python" ] || { say "Python 3 is required for the Terraform checks"; exit 1; }

make_venv() {  # make_venv DIR REQUIREMENT
  local dir="$1" req="$2" key
  key="$(echo "$req" | sha256sum | cut -c1-16)"
  stamp_ok "$dir/.stamp" "$key" && return 0
  say "creating $dir ($req)"
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "$req" \
    2> >(grep -v "^WARNING: Location" >&2)
  echo "$key" > "$dir/.stamp"
}

make_venv .venv-hcl "$HCL_REQ"
make_venv .venv-checkov "$CHECKOV_REQ"
