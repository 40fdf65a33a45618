#!/usr/bin/env bash
# Generates the public SDKs' code from proto/ with proto/buf.gen.yaml, and checks it.
#
#   scripts/sdk.sh           regenerate clients/python/src/talentshare/ (Python
#                            messages, gRPC stubs and .pyi stubs),
#                            clients/typescript/src/gen/ (protobuf-es) and
#                            clients/typescript/src/gen-google/ (the google.rpc error
#                            details, from clients/typescript/buf.gen.yaml); commit the
#                            result
#   scripts/sdk.sh --check   the drift check CI runs: regenerate into a scratch
#                            directory and fail, printing the differences, when the
#                            generated code in the tree is not what proto/ gives
#
# Installs the generator plugins first, pinned, so the output is the same on every
# machine: grpcio-tools (protoc and the grpc_python generator) and mypy-protobuf into
# ./.venv, buf (buf-bin) into ./.venv if scripts/tools.sh has not, and protoc-gen-es
# from clients/typescript's package-lock.json (npm ci). Quick when they are installed.
# Both outputs are written whole: a file no longer generated disappears.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *) echo "usage: scripts/sdk.sh [--check]" >&2; exit 2 ;;
esac

# --- plugins -------------------------------------------------------------------
# Python side: pinned in one place; reinstalled only when this list changes.
pins=(grpcio-tools==1.76.0 mypy-protobuf==5.1.0 buf-bin==1.75.0)
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.sdk-plugins
if [ "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ] || [ ! -x .venv/bin/protoc-gen-mypy ] \
  || [ ! -x .venv/bin/buf ]; then
  echo "sdk: installing ${pins[*]} into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" >"$stamp"
fi

# TypeScript side: protoc-gen-es is a devDependency of clients/typescript, pinned by
# its lockfile; installed (again) when missing or not the version the lockfile names.
ts=clients/typescript
if [ ! -f "$ts/package.json" ]; then
  echo "sdk: $ts/package.json is missing: the TypeScript SDK's package names protoc-gen-es" >&2
  exit 1
fi
es_version() { # the protoc-gen-es version in a package-lock.json or an installed package.json
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(d.get("packages", {}).get("node_modules/@bufbuild/protoc-gen-es", d).get("version", ""))' "$1" 2>/dev/null || true
}
es_installed="$ts/node_modules/@bufbuild/protoc-gen-es/package.json"
if [ ! -x "$ts/node_modules/.bin/protoc-gen-es" ] || { [ -f "$ts/package-lock.json" ] \
  && [ "$(es_version "$ts/package-lock.json")" != "$(es_version "$es_installed")" ]; }; then
  echo "sdk: installing $ts's packages (protoc-gen-es)"
  if [ -f "$ts/package-lock.json" ]; then
    (cd "$ts" && npm ci --no-audit --no-fund --loglevel=error)
  else
    (cd "$ts" && npm install --no-audit --no-fund --loglevel=error)
  fi
fi

# --- generate --------------------------------------------------------------------
# Into a scratch directory first: `buf generate -o` puts each plugin's `out` (relative
# to proto/) under it, so the tree is only touched once everything has succeeded.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
(cd proto && "$root/.venv/bin/buf" generate -o "$scratch/proto")
# The google.rpc error details the TypeScript SDK decodes (vendored protos, its own
# template: Python gets them from googleapis-common-protos).
(cd "$ts" && "$root/.venv/bin/buf" generate --template buf.gen.yaml -o "$scratch/$ts")

# What protoc does not write: the packages' __init__.py (so `talentshare` is a regular
# package that no other directory named talentshare on sys.path can shadow) and the
# PEP 561 marker that makes the .pyi stubs count for type checkers.
py="$scratch/clients/python/src/talentshare"
find "$py" -type d -exec touch {}/__init__.py \;
touch "$py/py.typed"

# The generated trees, as written to the repository.
outputs=(clients/python/src/talentshare clients/typescript/src/gen clients/typescript/src/gen-google)

if [ "$check" = 1 ]; then
  drift=0
  for out in "${outputs[@]}"; do
    if ! diff -rq -x __pycache__ "$out" "$scratch/$out" >/dev/null 2>&1; then
      drift=1
      echo "sdk: $out differs from what proto/ generates:" >&2
      # Paths as they are in the repository (committed vs generated).
      diff -rq -x __pycache__ "$out" "$scratch/$out" 2>&1 | sed "s|$scratch/|(generated) |g" >&2 || true
      diff -ruN -x __pycache__ "$out" "$scratch/$out" 2>&1 | sed "s|$scratch/|(generated) |g" | head -n 200 >&2 || true
    fi
  done
  if [ "$drift" = 1 ]; then
    echo "sdk: generated code is stale: run scripts/sdk.sh and commit the result" >&2
    exit 1
  fi
  if git rev-parse --git-dir >/dev/null 2>&1; then
    untracked="$(git ls-files --others --exclude-standard -- "${outputs[@]}")"
    if [ -n "$untracked" ]; then
      echo "sdk: up to date, but not in git yet (git add them):" >&2
      echo "$untracked" >&2
    fi
  fi
  echo "sdk: generated code matches proto/"
else
  for out in "${outputs[@]}"; do
    rm -rf "$out"
    mkdir -p "$(dirname "$out")"
    cp -R "$scratch/$out" "$out"
  done
  echo "sdk: generated ${outputs[*]}"
fi
