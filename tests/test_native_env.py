"""The native extension is tied to the environment it was built for: its build record is checked
before it is imported, a mismatched or unbuilt extension is refused with one warning that says what
is slower and how to fix it, and `mmcore inspect` shows the reason.

Each case runs in a fresh process on a shadow copy of the mmcore package (symlinks to the real files)
whose build record is rewritten, so the real extension is probed under each record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mmcore
from mmcore import native

REAL = Path(mmcore.__file__).parent
PROBE = """
import json
from mmcore import native
first, second = native.extension(), native.extension()
print(json.dumps({"loaded": first is not None, "same": first is second, "reason": native.status().reason,
                  "describe": native.status().describe()}))
"""
WARNING = "mmcore's native extension is not used"


def real_record() -> dict:
    path = REAL / native.BUILD_INFO
    if not path.exists():
        pytest.skip("mmcore._native is not built in this environment")
    return dict(json.loads(path.read_text()))


def probe(tmp_path: Path, record: dict | None, **env: str) -> tuple[dict, str]:
    site = tmp_path / "site"
    package = site / "mmcore"
    package.mkdir(parents=True)
    for entry in REAL.iterdir():
        if entry.name not in (native.BUILD_INFO, "__pycache__"):
            (package / entry.name).symlink_to(entry)
    if record is not None:
        (package / native.BUILD_INFO).write_text(json.dumps(record))
    environ = {**os.environ, "PYTHONPATH": str(site), **env}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report, done.stderr


def test_this_environments_build_loads_without_a_warning(tmp_path):
    report, stderr = probe(tmp_path, real_record())
    assert report["loaded"] and report["same"]
    assert report["reason"] == ""
    assert "built for executorch" in report["describe"]
    assert WARNING not in stderr


def test_extension_built_for_another_executorch_is_refused_with_one_warning(tmp_path):
    record = {**real_record(), "executorch_version": "0.0.1"}
    report, stderr = probe(tmp_path, record)
    assert not report["loaded"]
    assert "built for executorch 0.0.1" in report["reason"]
    assert stderr.count(WARNING) == 1
    assert "Python bindings" in stderr and "pip install" in stderr
    assert "ExecuTorch's Python bindings" in report["describe"]


def test_in_tree_build_from_another_environment_is_refused(tmp_path):
    record = {**real_record(), "inplace": True, "prefix": str(tmp_path / "other-env")}
    report, stderr = probe(tmp_path, record)
    assert not report["loaded"]
    assert "other-env" in report["reason"] and "editable install" in report["reason"]
    assert stderr.count(WARNING) == 1


def test_installed_build_needs_no_matching_prefix(tmp_path):
    """A wheel's extension (not in-tree) may have been built in an isolated build environment."""
    record = {**real_record(), "inplace": False, "prefix": str(tmp_path / "build-env")}
    report, _ = probe(tmp_path, record)
    assert report["loaded"]


def test_extension_without_build_record_is_refused(tmp_path):
    real_record()
    report, stderr = probe(tmp_path, None)
    assert not report["loaded"]
    assert "no build record" in report["reason"]
    assert stderr.count(WARNING) == 1


def test_switched_off_on_purpose_says_nothing(tmp_path):
    record = {**real_record(), "executorch_version": "0.0.1"}
    report, stderr = probe(tmp_path, record, MMCORE_NATIVE="0")
    assert not report["loaded"]
    assert WARNING not in stderr
