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

echo "== the Python SDK (clients/python): installed, mypy --strict, its tests and the story"
cargo build --workspace --bins --locked --quiet
# Installed as a user installs it (not editable): the tests import the built package.
.venv/bin/pip install --quiet --disable-pip-version-check ./clients/python
(cd clients/python && ../../.venv/bin/mypy --cache-dir ../../target/mypy \
  src/talentshare_sdk test_sdk.py test_story.py test_managed_mode.py)
.venv/bin/python -m pytest -q -p no:cacheprovider clients/python

echo "== the TypeScript SDK (clients/typescript): tsc --strict, the story over gRPC (HTTP/2)"
scripts/node-tools.sh
(cd clients/typescript && npm test --silent)

echo "== the web page (clients/web) in headless Chromium over gRPC-Web: target/clients/web-mypage.png"
(cd clients/web && npm test --silent)
