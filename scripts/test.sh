#!/usr/bin/env bash
# The test command: starts PostgreSQL and RabbitMQ if needed, installs the test
# tools, then runs every test of the workspace against the real services, then the
# offline checks of the Helm chart and the Istio policy (deploy/tests, which also start
# the built binaries as the chart would run them). SKIP_DEPLOY_CHECKS=1 skips those.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
scripts/tools.sh
export GRPCURL="$PWD/.venv/bin/grpcurl"
cargo nextest run --workspace --locked "$@"

if [ "${SKIP_DEPLOY_CHECKS:-0}" != 1 ]; then
  echo "== deploy checks (helm/, istio/, Dockerfile binaries): deploy/tests"
  # The chart-as-cluster smoke test runs target/debug/{order,payment,reservation,mypage}-svc
  # and talentshare; make sure they are built (a no-op after the tests above, mostly).
  cargo build --workspace --bins --locked --quiet
  .venv/bin/python -m pytest -c deploy/pytest.ini --rootdir deploy deploy/tests
fi

echo "== a Python client generated from proto/ drives the story (clients/python)"
cargo build --workspace --bins --locked --quiet
.venv/bin/python -m pytest -q -p no:cacheprovider clients/python
