"""Static checks of the build interface: pinned requirements, the Makefile targets, .ci/run."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENT_FILES = [
    ROOT / "layers/engine/requirements.txt",
    ROOT / "requirements/dev.txt",
    ROOT / "requirements/sam.txt",
]
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[a-z0-9,_-]+\])?==[0-9][0-9A-Za-z.+-]*$")


def _requirements(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


@pytest.mark.parametrize("path", REQUIREMENT_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_given_a_requirements_file_then_every_requirement_is_pinned_exactly(path: Path) -> None:
    for line in _requirements(path):
        if line.startswith("-r "):
            assert (path.parent / line[3:]).is_file(), line
            continue
        assert PIN.match(line), f"{path.name}: {line!r} is not pinned with =="


def test_given_the_requirement_files_then_no_package_is_pinned_twice_and_sam_stays_apart() -> None:
    def names(path: Path) -> list[str]:
        return [re.split(r"[\[=]", line)[0].lower() for line in _requirements(path) if not line.startswith("-r ")]

    engine, dev, sam = (names(path) for path in REQUIREMENT_FILES)
    assert len(set(engine + dev)) == len(engine + dev)
    assert sam == ["aws-sam-cli"]
    assert "aws-sam-cli" not in engine + dev
    for needed in ("aws-lambda-powertools", "simple-salesforce", "pynamodb"):
        assert needed in engine


def test_given_the_makefile_then_it_offers_the_project_interface() -> None:
    result = subprocess.run(
        ["make", "-n", "-p", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    targets = set(re.findall(r"^([a-z][a-z-]*):", result.stdout, flags=re.MULTILINE))
    expected = {"venv", "sam-venv", "lint", "static", "test", "sam-build-check", "demo", "bench", "clean"}
    assert expected <= targets, sorted(expected - targets)


def test_given_ci_run_then_it_is_an_executable_strict_bash_script_calling_make_test() -> None:
    script = ROOT / ".ci/run"
    assert os.access(script, os.X_OK)
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert re.search(r"^make test\b", text, flags=re.MULTILINE)
