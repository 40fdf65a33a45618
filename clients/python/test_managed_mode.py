"""proto/buf.gen.yaml's managed mode gives every talentshare file a go_package.

The .proto files carry no language options; managed mode sets them at generation time.
Go refuses a file without go_package, so a Go team adding protoc-gen-go to the
template depends on it. This runs `buf generate` with the template's own `managed:`
section and a tiny local plugin that records the go_package of every file it is
given (imports and well-known types included), over the whole module (the internal
payment and events packages too, which the public SDKs leave out).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"
BUF = os.environ.get("BUF", str(ROOT / ".venv" / "bin" / "buf"))

# A protoc plugin: reads the CodeGeneratorRequest, answers one JSON file mapping each
# file to its go_package.
RECORDER = '''
import json, sys
from google.protobuf.compiler import plugin_pb2
request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
packages = {f.name: f.options.go_package for f in request.proto_file}
response = plugin_pb2.CodeGeneratorResponse()
response.file.add(name="go_packages.json", content=json.dumps(packages, sort_keys=True))
sys.stdout.buffer.write(response.SerializeToString())
'''


def test_managed_mode_sets_go_package_on_every_talentshare_file(tmp_path: pathlib.Path) -> None:
    template = yaml.safe_load((PROTO / "buf.gen.yaml").read_text())
    managed = template["managed"]
    assert managed["enabled"] is True
    prefixes = [o["value"] for o in managed.get("override", []) if o.get("file_option") == "go_package_prefix"]
    assert len(prefixes) == 1, "one go_package_prefix override"
    prefix = prefixes[0]

    plugin = tmp_path / "recorder.py"
    plugin.write_text(RECORDER)
    out = tmp_path / "out"
    check = {
        "version": "v2",
        "managed": managed,
        # One request with every file ("all"), imports and well-known types included.
        "plugins": [
            {
                "local": [sys.executable, str(plugin)],
                "out": str(out),
                "strategy": "all",
                "include_imports": True,
                "include_wkt": True,
            }
        ],
        "inputs": [{"directory": "."}],
    }
    subprocess.run([BUF, "generate", "--template", json.dumps(check)], cwd=PROTO, check=True)
    packages: dict[str, str] = json.loads((out / "go_packages.json").read_text())

    ours = {name: go for name, go in packages.items() if name.startswith("talentshare/")}
    expected = {str(p.relative_to(PROTO)) for p in (PROTO / "talentshare").rglob("*.proto")}
    assert set(ours) == expected, "every talentshare file reached the plugin"
    for name, go_package in ours.items():
        directory = name.rsplit("/", 1)[0]
        package, version = directory.split("/")[-2:]  # talentshare/order/v1 -> order, v1
        assert go_package == f"{prefix}/{directory};{package}{version}", (name, go_package)
    # Several files of one package share one Go package.
    assert ours["talentshare/common/v1/types.proto"] == ours["talentshare/common/v1/errors.proto"]

    # The well-known types keep their canonical Go packages.
    assert packages["google/protobuf/timestamp.proto"] == "google.golang.org/protobuf/types/known/timestamppb"
    assert packages["google/protobuf/duration.proto"] == "google.golang.org/protobuf/types/known/durationpb"
