"""A minimal install, the plain pip way: a fresh virtual environment without torch, then
`pip install <mmcore> <plugins>` from a copy of the source tree with build isolation on (pip fetches
executorch and setuptools from PyPI into the build environment as `build-system.requires` says).

- The extension is built during that install, for that environment's executorch (its build record
  says so, and it loads there).
- Text, image+audio and session requests give the same ids there as in the test environment (which
  has torch), torch is never imported, and the native path runs them.

The environment is cached under the test cache dir, keyed by the sources it was built from, so a
second session reuses it; building it the first time takes minutes (downloads from PyPI).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmcore.testing import AudioEncoderSpec, VisionEncoderSpec
from mmcore.testing._files import file_lock
from mmcore.testing.cache import default_cache_dir

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("mmcore-text", "mmcore-image", "mmcore-audio", "mmcore-adapters")
IGNORED = shutil.ignore_patterns("*.so", "*.build.json", "build", "__pycache__", "*.egg-info", ".git*")

pytestmark = pytest.mark.slow

# Run in both environments: the same requests through the public API, reported as JSON.
REQUESTS = """
import json, sys
from mmcore import GenerationConfig, Session
from mmcore.runner import MultimodalRunner, TextLLMRunner
from mmcore_audio import AudioInput
from mmcore_image import ImageInput

text_pte, media_pte, tokenizer, photo, tone = sys.argv[1:6]
greedy = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=8)
text = TextLLMRunner(text_pte, tokenizer)
media = MultimodalRunner(media_pte, tokenizer)
session = Session(MultimodalRunner(media_pte, tokenizer))
report = {
    "text": text.generate("the quick brown fox", greedy).tokens,
    "image_audio": media.generate([ImageInput(photo), AudioInput(tone), "what do you see and hear"], greedy).tokens,
    "session": [session.send("hello there", greedy).tokens, session.send("and the colour", greedy).tokens],
    "native": [
        type(r.program.method("text_decoder" if r.program.has_method("text_decoder") else "forward")).__name__
        for r in (text, media, session.runner)
    ],
    "torch_imported": "torch" in sys.modules,
}
print(json.dumps(report))
"""

# The installed files, found without importing the mmcore package (its run path may need more than
# this test is about); the extension is loaded the way mmcore.native loads it.
STATUS = """
import ctypes, importlib.machinery, importlib.metadata, importlib.util, json, os, sys
files = {str(f): f.locate() for f in importlib.metadata.files("mmcore")}
extension = next(p for name, p in files.items() if name.startswith("mmcore/_native.") and name.endswith(".so"))
record = json.loads(files["mmcore/_native.build.json"].read_text())
root = importlib.util.find_spec("executorch").submodule_search_locations[0]
ctypes.CDLL(os.path.join(root, "lib", "libexecutorch.so"), mode=os.RTLD_GLOBAL)
loader = importlib.machinery.ExtensionFileLoader("mmcore._native", str(extension))
module = importlib.util.module_from_spec(importlib.util.spec_from_loader("mmcore._native", loader))
loader.exec_module(module)
print(json.dumps({"build": record, "extension": str(extension), "prefix": sys.prefix,
                  "executorch": importlib.metadata.version("executorch"), "executorch_root": root,
                  "operators": len(module.registered_operators()), "torch_imported": "torch" in sys.modules}))
"""


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _packaging_files() -> list[Path]:
    """What decides the environment's dependencies: the pyprojects and setup scripts."""
    found = [ROOT / "pyproject.toml", ROOT / "setup.py"]
    for plugin in PLUGINS:
        found += sorted(p for p in (ROOT / "plugins" / plugin).glob("*") if p.name in ("pyproject.toml", "setup.py"))
    return found


def _source_files() -> list[Path]:
    suffixes = {".py", ".cpp", ".c", ".pyi", ".toml", ".json", ".typed", ".md"}
    found = []
    for folder in [ROOT / "mmcore", *(ROOT / "plugins" / p for p in PLUGINS)]:
        found += sorted(
            p
            for p in folder.rglob("*")
            if p.is_file()
            and p.suffix in suffixes
            and not p.name.endswith(".build.json")
            and "__pycache__" not in p.parts
        )
    return [*_packaging_files(), ROOT / "README.md", *found]


def _pip(python: Path, *args: str) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *args],
        check=True,
        timeout=3000,
    )


@pytest.fixture(scope="session")
def minimal_env() -> Path:
    """The python of a torch-free virtual environment with mmcore and its plugins installed the plain way.

    The environment (executorch and every dependency) is keyed by the packaging files; the project
    is reinstalled into it, the same plain way, whenever its sources change.
    """
    venvs = default_cache_dir() / "venvs"
    venvs.mkdir(parents=True, exist_ok=True)
    target = venvs / f"minimal-{_digest(_packaging_files())}"
    python = target / "bin" / "python"
    installed = target / f"installed-{_digest(_source_files())}"
    with file_lock(venvs / "minimal.lock"):
        if installed.exists():
            return python
        fresh = not (target / "ready").exists()
        if fresh:
            for old in venvs.glob("minimal-*"):
                shutil.rmtree(old, ignore_errors=True)
            # the base interpreter, not this environment's (which sees system site-packages with torch)
            base = getattr(sys, "_base_executable", sys.executable)
            subprocess.run([base, "-m", "venv", str(target)], check=True, timeout=600)
        source = target / "src"
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(ROOT, source, ignore=IGNORED)
        packages = [str(source), *(str(source / "plugins" / p) for p in PLUGINS)]
        _pip(python, *packages)  # pip rebuilds and reinstalls local directories every time
        for old in target.glob("installed-*"):
            old.unlink()
        (target / "ready").write_text("ok\n")
        installed.write_text("ok\n")
    return python


def _run(python: Path, script: str, *args: str) -> dict:
    done = subprocess.run(
        [str(python), "-c", script, *args], capture_output=True, text=True, timeout=600, cwd="/", check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Missing operator" not in done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_minimal_env_has_no_torch(minimal_env):
    done = subprocess.run([str(minimal_env), "-c", "import torch"], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "No module named 'torch'" in done.stderr


def test_build_isolation_builds_the_extension_for_that_environments_executorch(minimal_env):
    report = _run(minimal_env, STATUS)
    assert report["operators"] > 0
    assert report["build"]["executorch_version"] == report["executorch"] == "1.5.1"
    assert report["build"]["inplace"] is False
    # installed into the environment (not a source tree), and linked with the environment's runtime
    assert Path(report["extension"]).is_relative_to(report["prefix"])
    assert Path(report["executorch_root"]).is_relative_to(report["prefix"])
    assert not report["torch_imported"]


def test_requests_without_torch_give_the_same_ids(minimal_env, make_spec, program_path, tokenizer_dir, tmp_path):
    import numpy as np
    import soundfile
    from PIL import Image

    text_pte = program_path(make_spec(kind="text"))
    media_pte = program_path(make_spec(vision=VisionEncoderSpec(), audio=AudioEncoderSpec()))
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((45, 70, 3)) * 255).astype(np.uint8)).save(tmp_path / "photo.png")
    t = np.arange(int(0.3 * 16000)) / 16000
    soundfile.write(tmp_path / "tone.wav", 0.4 * np.sin(2 * np.pi * 440 * t), 16000)
    args = (str(text_pte), str(media_pte), str(tokenizer_dir), str(tmp_path / "photo.png"), str(tmp_path / "tone.wav"))

    reference = _run(Path(sys.executable), REQUESTS, *args)
    minimal = _run(minimal_env, REQUESTS, *args)

    assert minimal["torch_imported"] is False
    assert minimal["native"] == ["NativeMethod"] * 3
    for request in ("text", "image_audio", "session"):
        assert minimal[request] == reference[request], request
    assert len(reference["text"]) == 8 and len(reference["session"]) == 2


def test_demo_runs_without_torch_once_exported(minimal_env):
    from mmcore.demo_model import export_demo_program

    export_demo_program()  # here, with torch; the torch-free environment finds it in the shared cache
    reference = subprocess.run([sys.executable, "-m", "mmcore", "demo"], capture_output=True, text=True, cwd="/")
    minimal = subprocess.run([str(minimal_env), "-m", "mmcore", "demo"], capture_output=True, text=True, cwd="/")
    assert minimal.returncode == 0, minimal.stderr[-3000:]
    assert minimal.stdout == reference.stdout
    assert "circle" in minimal.stdout


def test_custom_op_program_runs_without_torch_like_the_cpp_runner(minimal_env, vocab_size, tokenizer_dir, cpp):
    """An export_llm program with ExecuTorch's llama:: custom SDPA and KV-cache ops, on mmcore's kernels."""
    from mmcore import kernels
    from mmcore.testing.llama_export import LlamaExportSpec, build_llama_program

    pte = build_llama_program(LlamaExportSpec(vocab_size=vocab_size)).pte
    script = """
import json, sys
from mmcore import GenerationConfig
from mmcore.runner import TextLLMRunner
runner = TextLLMRunner(sys.argv[1], sys.argv[2])
ids = runner.generate(sys.argv[3], GenerationConfig(echo=False, temperature=0.0, max_new_tokens=10, num_bos=1)).tokens
print(json.dumps({"ids": ids, "native": type(runner.program.method("forward")).__name__,
                  "torch_imported": "torch" in sys.modules}))
"""
    prompt = "the quick brown fox jumps over the lazy dog"
    minimal = _run(minimal_env, script, str(pte), str(tokenizer_dir), prompt)
    kernels.prepare(pte)  # here ExecuTorch's own llama:: kernels run the reference (tests/conftest.py)

    assert minimal["ids"] == cpp.generate(cpp.text(pte), prompt, 10, num_bos=1)
    assert minimal["native"] == "NativeMethod" and minimal["torch_imported"] is False
