#!/usr/bin/env bash
# Makes sure PgBouncer (Debian's `pgbouncer` package) is installed, for the test that
# runs the services through it (e2e/tests/e2e/pgbouncer.rs), and prints the binary's
# path. Idempotent and silent when it is already there; installs with apt-get (as root,
# or through sudo) otherwise. It only installs: the test starts its own PgBouncer on a
# free port with a config of its own, and this script stops the packaged daemon that
# Debian's postinst may have started on 6432, which nothing here uses.
set -euo pipefail

find_bin() {
  command -v pgbouncer 2>/dev/null || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; } || true
}

bin=$(find_bin)
if [ -z "$bin" ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  export DEBIAN_FRONTEND=noninteractive
  echo "pgbouncer: installing Debian's pgbouncer package" >&2
  # Stale package lists fail the install; refresh them once and try again.
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq >/dev/null
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null
  fi
  # The package's own service (port 6432, /etc/pgbouncer) is not ours to run.
  if [ -x /etc/init.d/pgbouncer ]; then
    "${sudo[@]}" /etc/init.d/pgbouncer stop >/dev/null 2>&1 || true
  fi
  bin=$(find_bin)
  [ -n "$bin" ] || { echo "pgbouncer: installed, but no pgbouncer binary found" >&2; exit 1; }
fi
echo "$bin"
