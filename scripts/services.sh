#!/usr/bin/env bash
# Makes sure the local PostgreSQL (127.0.0.1:5432) and RabbitMQ (127.0.0.1:5672)
# the tests use are running, starting them if they are not, and that PgBouncer is
# installed. Never stops them.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 120); do
    port_open "$port" && return 0
    sleep 0.5
  done
  echo "services: $name did not come up on port $port" >&2
  return 1
}

if ! port_open 5432; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
wait_port PostgreSQL 5432

if ! port_open 5672; then
  echo "services: starting RabbitMQ"
  rabbitmq-server -detached
fi
wait_port RabbitMQ 5672
# The AMQP port opens before the broker accepts sessions; wait for it to answer.
if command -v rabbitmqctl >/dev/null; then
  for _ in $(seq 1 60); do
    rabbitmqctl -q status >/dev/null 2>&1 && break
    sleep 1
  done
fi
echo "services: PostgreSQL and RabbitMQ are up"

# PgBouncer is installed only (e2e/tests/e2e/pgbouncer.rs starts its own on a free port);
# that test installs it too, so a failure here is reported and not fatal.
"$(dirname "$0")/pgbouncer.sh" >/dev/null ||
  echo "services: could not install pgbouncer; the PgBouncer e2e test will fail" >&2
