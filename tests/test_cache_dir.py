"""mmcore's cache directory (platformdirs, `XDG_CACHE_HOME`, `MMCORE_CACHE_DIR`) and its lock files."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmcore.cache import cache_dir
from mmcore.testing import build_tokenizer, default_cache_dir
from mmcore.testing._files import file_lock


@pytest.fixture
def no_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fake home; no cache variables set."""
    for name in ("MMCORE_CACHE_DIR", "MMCORE_TESTING_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.mark.skipif(sys.platform != "linux", reason="the XDG layout is Linux's")
def test_the_cache_dir_follows_xdg_and_the_override(no_overrides: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmcore.demo_model.export import cached_demo_path

    home = no_overrides / "home"
    assert cache_dir() == home / ".cache" / "mmcore"
    monkeypatch.setenv("XDG_CACHE_HOME", str(no_overrides / "xdg"))
    assert cache_dir() == no_overrides / "xdg" / "mmcore"
    assert default_cache_dir() == no_overrides / "xdg" / "mmcore" / "testing"
    assert cached_demo_path().parent == no_overrides / "xdg" / "mmcore" / "demo"
    monkeypatch.setenv("MMCORE_CACHE_DIR", str(no_overrides / "mine"))
    assert cache_dir() == no_overrides / "mine"
    assert default_cache_dir() == no_overrides / "mine" / "testing"
    assert cached_demo_path().parent == no_overrides / "mine" / "demo"
    monkeypatch.setenv("MMCORE_TESTING_CACHE", str(no_overrides / "tests"))  # the test programs' own override
    assert default_cache_dir() == no_overrides / "tests" and cache_dir() == no_overrides / "mine"
    assert not (no_overrides / "xdg").exists() and not (no_overrides / "mine").exists()  # nothing created


def test_the_command_uses_the_override(tmp_path: Path) -> None:
    env = {**os.environ, "MMCORE_CACHE_DIR": str(tmp_path / "c")}
    script = "from mmcore.demo_model.export import cached_demo_path; print(cached_demo_path())"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).parent == tmp_path / "c" / "demo"


def test_building_leaves_no_lock_file(tmp_path: Path) -> None:
    build_tokenizer(cache_dir=tmp_path, vocab_size=300)
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.rglob("*.lock"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files either


def _count(lock: str, counter: str, rounds: int) -> None:
    for _ in range(rounds):
        with file_lock(Path(lock)):
            value = int(Path(counter).read_text())
            time.sleep(0.001)  # widen the window a second holder would race in
            Path(counter).write_text(str(value + 1))


@pytest.mark.skipif(sys.platform == "win32", reason="file locks are POSIX-only")
def test_the_lock_excludes_other_processes_and_is_removed(tmp_path: Path) -> None:
    lock, counter = tmp_path / ".build.lock", tmp_path / "counter"
    counter.write_text("0")
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    workers = [context.Process(target=_count, args=(str(lock), str(counter), 25)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert counter.read_text() == "100"  # no two holders at once, although each removes the file
    assert not lock.exists()
    with file_lock(lock):
        assert lock.exists()
    assert not lock.exists()
