#!/usr/bin/env bash
# The test command: starts PostgreSQL and RabbitMQ if needed, installs the test
# tools, then runs every test of the workspace against the real services.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
scripts/tools.sh
export GRPCURL="$PWD/.venv/bin/grpcurl"
cargo nextest run --workspace --locked "$@"
