"""The Dockerfile (it cannot be built here): hadolint is clean, and the image holds exactly
the binaries the chart runs, as a numeric non-root user on a minimal base."""
import re
import subprocess

import pytest

from conftest import rendered_scenario
from deploycheck.paths import ROOT

HADOLINT = str(ROOT / ".venv" / "bin" / "hadolint")
DOCKERFILE = ROOT / "Dockerfile"


def hadolint(text: str) -> subprocess.CompletedProcess:
    return subprocess.run([HADOLINT, "--no-color", "-"], input=text, capture_output=True, text=True, timeout=60)


def test_hadolint_is_clean():
    done = hadolint(DOCKERFILE.read_text())
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "bad,rule",
    [
        ("FROM gcr.io/distroless/cc-debian12:nonroot", "FROM gcr.io/distroless/cc-debian12:latest"),  # DL3007
        ("USER 65532:65532", "USER root"),  # DL3002
    ],
    ids=["latest-tag", "root-user"],
)
def test_hadolint_reports_a_seeded_defect(bad, rule):
    text = DOCKERFILE.read_text()
    assert bad in text
    done = hadolint(text.replace(bad, rule))
    assert done.returncode != 0 and re.search(r"DL300[27]", done.stdout), done.stdout


def final_stage(text: str) -> str:
    return text[text.rindex("\nFROM ") :]


def test_image_holds_the_binaries_the_chart_runs():
    text = DOCKERFILE.read_text()
    built = set(re.findall(r"--bin ([a-z-]+)", text))
    copied = set(re.findall(r"target/release/([a-z-]+)", text))
    run = set()
    for name in ("default", "production"):
        r = rendered_scenario(name)
        for item in r.of_kind("Deployment", "Pod"):
            spec = item.obj["spec"]["template"]["spec"] if item.kind == "Deployment" else item.obj["spec"]
            for c in spec["containers"]:
                assert c["command"][0].startswith("/usr/local/bin/"), c["command"]
                run.add(c["command"][0].rsplit("/", 1)[1])
    assert run == {"order-svc", "payment-svc", "reservation-svc", "mypage-svc", "talentshare"}
    assert built == copied == run
    assert "COPY --from=build /out/ /usr/local/bin/" in final_stage(text)
    assert "cargo build --release --locked" in text


def test_runtime_is_minimal_and_non_root_by_number():
    stage = final_stage(DOCKERFILE.read_text())
    base = re.match(r"\nFROM (\S+)", stage).group(1)
    assert base.startswith(("gcr.io/distroless/cc-debian12", "debian:bookworm-slim"))
    users = re.findall(r"^USER (\S+)", stage, re.M)
    assert users and re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1])
    uid = int(users[-1].split(":")[0])
    chart_uid = rendered_scenario("default").of_kind("Deployment")[0].obj["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert uid == chart_uid, "the chart's runAsUser is the image's user"
