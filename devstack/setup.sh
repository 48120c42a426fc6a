#!/usr/bin/env bash
# Set up everything the local stack, tests and demo need; fast when already done.
# Each step leaves a stamp that names its inputs, so it reruns only on change.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*" >&2; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# 1. System packages: Java for the emulators, Chromium for the snippet's tests.
need=()
command -v java >/dev/null || need+=(default-jre-headless)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get install ${need[*]}"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v gcloud >/dev/null || { say "gcloud (Google Cloud CLI) is required"; exit 1; }

# 2. The product's virtualenv (Python 3.11, pinned).
key="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)"
if ! stamp_ok .venv/.stamp "$key"; then
  say "creating .venv"
  python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt \
    2> >(grep -v "^WARNING: Location" >&2)
  echo "$key" > .venv/.stamp
fi

# 3. The BigQuery emulator: its own Python 3.13 virtualenv, DuckDB pinned to 1.5.5
#    with its extensions from PyPI, since DuckDB cannot download them here.
bqreq="local-bigquery==0.3.2 duckdb==1.5.5 duckdb-extensions==1.5.5
duckdb-extension-icu==1.5.5 duckdb-extension-spatial==1.5.5
duckdb-extension-ducklake==1.5.5"
key="$(echo "$bqreq" | sha256sum | cut -c1-16)"
if ! stamp_ok .venv-bq/.stamp "$key"; then
  py313=""
  for cand in "$(pyenv root 2>/dev/null)/versions/3.13.0/bin/python" python3.13; do
    if "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null
    then py313="$cand"; break; fi
  done
  [ -n "$py313" ] || { say "Python 3.13 is required for the BigQuery emulator"; exit 1; }
  say "creating .venv-bq with $py313"
  "$py313" -m venv .venv-bq
  # shellcheck disable=SC2086
  .venv-bq/bin/pip install -q --disable-pip-version-check $bqreq \
    2> >(grep -v "^WARNING: Location" >&2)
  mkdir -p .cache/bq-home
  HOME="$PWD/.cache/bq-home" .venv-bq/bin/python -c "
import duckdb_extensions
for name in ('icu', 'spatial', 'ducklake'):
    duckdb_extensions.import_extension(name)
"
  echo "$key" > .venv-bq/.stamp
fi

# 4. Tool virtualenvs for the offline Terraform checks (python-hcl2, checkov).
bash devstack/setup_infra.sh

# 5. The snippet's build tool (terser, pinned by snippet/package-lock.json).
key="$(sha256sum snippet/package-lock.json | cut -c1-16)"
if ! stamp_ok snippet/node_modules/.stamp "$key"; then
  command -v npm >/dev/null || { say "Node.js and npm are required"; exit 1; }
  say "npm ci (snippet)"
  npm ci --prefix snippet --no-audit --no-fund --loglevel=error >/dev/null
  echo "$key" > snippet/node_modules/.stamp
fi
