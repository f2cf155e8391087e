#!/usr/bin/env bash
# The README's test command: install system tools (PLINK 1.9 and 2 as references),
# the package with its test extra, then run the default (non-slow) test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v plink2 >/dev/null || ! command -v plink1.9 >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq plink2 plink1.9 >/dev/null
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq plink2 plink1.9 >/dev/null
  fi
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 -m pytest -q "$@"
