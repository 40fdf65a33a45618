"""Where things are."""
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "talentshare"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
ISTIO_CRDS = ROOT / "deploy" / "schemas" / "istio-1.30.3"
GATEWAY_API_CRDS = ROOT / "deploy" / "schemas" / "gateway-api-1.5.1"
ISTIO_GENERATED = ROOT / "istio" / "talentshare.yaml"
# The binaries the cargo build leaves (scripts/test.sh builds them before the checks).
BIN_DIR = pathlib.Path(os.environ.get("TALENTSHARE_BIN_DIR", ROOT / "target" / "debug"))
GRPCURL = os.environ.get("GRPCURL", str(ROOT / ".venv" / "bin" / "grpcurl"))
