#!/usr/bin/env bash
# Installs what the TypeScript SDK (clients/typescript) and the web page (clients/web)
# need: their npm packages, exactly as their committed package-lock.json files say
# (`npm ci`, redone only when a lockfile changed), and Debian's `chromium` for the
# browser test (playwright-core drives it; no browser is downloaded). Needs Node 20+
# and npm on the PATH. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node-tools: node and npm (Node 20 or later) are needed on the PATH" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "node-tools: Node $(node --version) is too old; the SDK needs Node 20 or later" >&2
  exit 1
fi

# clients/typescript first: clients/web links to it (file:../typescript) and uses its
# packages from there.
for dir in clients/typescript clients/web; do
  stamp="$dir/node_modules/.talentshare-sdk-lock" # the name scripts/sdk.sh uses too
  if ! cmp -s "$dir/package-lock.json" "$stamp"; then
    echo "node-tools: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$stamp"
  fi
done

if [ ! -x /usr/bin/chromium ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  export DEBIAN_FRONTEND=noninteractive
  echo "node-tools: installing Debian's chromium (headless browser for clients/web's test)"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
fi
