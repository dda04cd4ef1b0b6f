"""The run path imports no torch: text, image+audio, session, sampled, constrained and speculative
requests, and `mmcore run` / `mmcore inspect`, in a subprocess where importing torch raises.

The subprocess gets the programs this (torch) process built; its token ids must equal the ones
computed here, in-process. (A fresh virtual environment without torch installed at all is
tested separately; this test only needs the current one.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mmcore import GenerationConfig, MultimodalRunner, Program
from mmcore.program import NativeMethod, native_extension
from mmcore.testing import AudioEncoderSpec, VisionEncoderSpec

pytestmark = pytest.mark.skipif(native_extension() is None, reason="the torch-free path is the native one")

# A meta-path finder that refuses torch (and every torch.* module) before anything else runs.
_BLOCK_TORCH = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"importing {name} is blocked in this test")
        return None

sys.meta_path.insert(0, _NoTorch())
"""

# The requests, as one function both processes run; it returns plain JSON data.
_REQUESTS = """
def run_requests(text_pte, media_pte, tokenizer, photo, tone):
    import mmcore_audio, mmcore_image, mmcore_text
    from mmcore import GenerationConfig, MultimodalRunner, Program, Session, TextLLMRunner
    from mmcore.plugins import PluginManager
    from mmcore.program import NativeMethod
    from mmcore_audio import AudioInput
    from mmcore_image import ImageInput

    greedy = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=12)
    sampled = greedy.replace(temperature=0.8, top_k=40, top_p=0.9, seed=7, logprobs=True)
    pm = PluginManager(entry_points=False)
    for module, name in ((mmcore_text, "text"), (mmcore_image, "image"), (mmcore_audio, "audio")):
        pm.register(module, name=name)
    out = {}
    text = TextLLMRunner(Program(text_pte), tokenizer, plugin_manager=pm)
    out["text"] = text.generate("the quick brown fox", greedy).tokens
    out["text_sampled"] = text.generate("the quick brown fox", sampled).tokens
    out["text_ngram"] = text.generate(
        "one two one two one two", greedy.replace(speculative="ngram", ignore_eos=True)
    ).tokens
    media = MultimodalRunner(Program(media_pte), tokenizer, plugin_manager=pm)
    request = [ImageInput(photo), AudioInput(tone), "what do you see and hear"]
    out["media"] = media.generate(request, greedy).tokens
    media.reset()
    again = media.generate(request, greedy)
    out["media_again"] = again.tokens
    out["encoder_cache_hits"] = again.stats.extra.get("encoder_cache_hits")
    media.reset()
    out["media_json"] = media.generate(
        ["a person as json"], greedy.replace(max_new_tokens=16, response_format={"type": "json_object"})
    ).tokens
    session = Session(MultimodalRunner(Program(media_pte), tokenizer, plugin_manager=pm))
    turns = [
        {"role": "user", "content": [{"type": "image", "image": str(photo)}, {"type": "text", "text": "describe"}]},
        "and the sound?",
    ]
    out["session"] = [session.send(turn, greedy).tokens for turn in turns]
    out["native"] = all(
        isinstance(r.program.method(m), NativeMethod) for r, m in ((text, "forward"), (media, "text_decoder"))
    )
    return out
"""


def _media_files(folder: Path) -> tuple[Path, Path]:
    import soundfile

    rng = np.random.default_rng(0)
    photo = folder / "photo.png"
    Image.fromarray((rng.random((40, 52, 3)) * 255).astype(np.uint8)).save(photo)
    tone = folder / "tone.wav"
    t = np.arange(int(0.25 * 16000)) / 16000
    soundfile.write(tone, 0.4 * np.sin(2 * np.pi * 330 * t), 16000)
    return photo, tone


def _in_subprocess(
    code: str, *args: str, stdin: str | None = None, block: bool = True
) -> subprocess.CompletedProcess[str]:
    prelude = _BLOCK_TORCH if block else "import sys\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code, *args], input=stdin, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, make_spec: Any, program_path: Any, tokenizer_dir: Path) -> Any:
    folder = tmp_path_factory.mktemp("no-torch")
    text_pte = program_path(make_spec(kind="text"))
    media_pte = program_path(make_spec(vision=VisionEncoderSpec(), audio=AudioEncoderSpec()))
    photo, tone = _media_files(folder)
    return [str(text_pte), str(media_pte), str(tokenizer_dir), str(photo), str(tone)]


def test_requests_without_torch_give_the_same_ids(setup: list[str]) -> None:
    namespace: dict[str, Any] = {}
    exec(_REQUESTS, namespace)  # the same request code as the subprocess runs
    expected = namespace["run_requests"](*setup)

    script = (
        _REQUESTS
        + """
import json
result = run_requests(*sys.argv[1:])
result["torch_imported"] = "torch" in sys.modules
result["executorch_bindings_imported"] = "executorch.extension.pybindings._C" in sys.modules
print(json.dumps(result))
"""
    )
    run = _in_subprocess(script, *setup)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got.pop("torch_imported") is False
    assert got.pop("executorch_bindings_imported") is False
    assert got["native"] is True and expected["native"] is True
    assert got == expected
    assert got["encoder_cache_hits"] == 2  # the repeated image and audio came from the encoder cache
    assert all(got[k] for k in ("text", "text_sampled", "text_ngram", "media", "media_json")) and all(got["session"])


def test_cli_run_and_inspect_without_torch(setup: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from mmcore.cli import main

    text_pte, media_pte, tokenizer, photo, tone = setup
    args = ["run", media_pte, "--tokenizer", tokenizer, "--image", photo, "--audio", tone, "--text", "what is it"]
    args += ["--max-new-tokens", "6", "--json"]
    assert main(args) == 0
    expected = json.loads(capsys.readouterr().out)["tokens"]

    code = """
import json
from mmcore.cli import main
code = main(sys.argv[1:])
assert "torch" not in sys.modules, "torch was imported"
sys.exit(code)
"""
    run = _in_subprocess(code, *args)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["tokens"] == expected
    inspect = _in_subprocess(code, "inspect", text_pte)
    assert inspect.returncode == 0, inspect.stderr[-3000:]
    assert "forward" in inspect.stdout

    turn = {"role": "user", "content": [{"type": "image", "image": photo}, {"type": "text", "text": "what"}]}
    lines = "\n".join(json.dumps(m) for m in (turn, {"role": "user", "content": "and then"})) + "\n"
    chat_args = ["chat", media_pte, "--tokenizer", tokenizer, "--jsonl", "--max-new-tokens", "5"]
    answers = []
    for block in (True, False):
        chat = _in_subprocess(code, *chat_args, stdin=lines, block=block)
        assert chat.returncode == 0, chat.stderr[-3000:]
        answers.append([json.loads(line)["tokens"] for line in chat.stdout.splitlines() if line.strip()])
    assert answers[0] == answers[1] and len(answers[0]) == 2 and all(answers[0])


def test_numpy_results_equal_torch_fed_requests(setup: list[str], tokenizer_dir: Path, plugin_manager: Any) -> None:
    """Arrays handed in as torch tensors (converted at the edge) give what numpy arrays give."""
    import torch

    from mmcore import EmbeddingsInput, TokensInput

    _, media_pte, *_ = setup
    program = Program(media_pte)
    assert isinstance(program.method("text_decoder"), NativeMethod)
    embeds = np.random.default_rng(1).standard_normal((1, 5, 64), dtype=np.float32)
    greedy = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=8, ignore_eos=True)
    runs = []
    for wrap in (lambda a: a, torch.from_numpy):
        runner = MultimodalRunner(program, tokenizer_dir, plugin_manager=plugin_manager)
        runs.append(runner.generate([TokensInput(wrap(np.array([0, 5, 6]))), EmbeddingsInput(wrap(embeds))], greedy))
        program = Program(media_pte)
    assert runs[0].tokens == runs[1].tokens
