"""Multi-turn time to first token: an mmcore Session vs ExecuTorch's C++ MultimodalRunner re-sending
the whole conversation each turn, on a ~60M-parameter program with a vision encoder producing 256
image rows per 128x128 image (Gemma3 has 256 per image). One process.

    python3 bench/session.py                 # 5 repeats
    python3 bench/session.py --repeats 9 --backend portable

Turn 1 is [image, question]; turns 2 and 3 add one short sentence. For the C++ runner each turn
re-sends the conversation so far (image, texts and the previous answers as token ids) after
`reset()`, which is what a stateless caller does. Also reported: turn-1 TTFT with the image already
in mmcore's encoder cache (a new session) versus not.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Any

import torch

from mmcore import EmbeddingsInput, GenerationConfig, PrefillContext, hookimpl
from mmcore.plugins import PluginManager
from mmcore.runner import MultimodalRunner
from mmcore.session import Session
from mmcore.testing import DecoderSpec, ProgramSpec, VisionEncoderSpec, build_program, build_tokenizer

QUESTIONS = ["what is in the picture", "and the colour", "is it big"]
MAX_NEW = 16


class Pixels:
    """An already-preprocessed image tensor `[3, H, W]` (keeps the benchmark about the runner)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class PixelsHandler:
    name = "pixels"
    input_types = (Pixels,)

    def preprocess(self, item: Pixels, ctx: PrefillContext) -> torch.Tensor:
        return item.tensor.unsqueeze(0)  # [1, 3, H, W]

    def prefill(self, pixels: torch.Tensor, ctx: PrefillContext) -> EmbeddingsInput:
        return EmbeddingsInput(ctx.program.method("vision_encoder").execute([pixels])[0])

    def from_content(self, part: dict[str, Any]) -> Pixels:
        return Pixels(part["pixels"])


def plugin_manager() -> PluginManager:
    import mmcore_text

    class Plugin:
        @hookimpl
        def mmcore_register_modalities(self, registry: Any) -> None:
            registry.add(PixelsHandler())

    pm = PluginManager(entry_points=False)
    pm.register(mmcore_text, name="text")
    pm.register(Plugin(), name="pixels")
    return pm


def ttft_session(session: Session, message: Any, config: GenerationConfig) -> tuple[float, list[int]]:
    first: list[float] = []
    start = time.perf_counter()
    result = session.send(message, config, piece_callback=lambda _: first or first.append(time.perf_counter()))
    return first[0] - start, result.tokens


def ttft_cpp(runner: Any, inputs: list[Any]) -> float:
    from executorch.extension.llm.runner import GenerationConfig as CppConfig

    stamps: list[float] = []
    runner.reset()
    start = time.perf_counter()
    runner.generate(inputs, CppConfig(echo=False, temperature=0.0, max_new_tokens=MAX_NEW, warming=True),
                    lambda _: stamps.append(time.perf_counter()))  # fmt: skip
    return stamps[0] - start


def cpp_inputs(image: torch.Tensor, turns: list[tuple[str, list[int]]], question: str) -> list[Any]:
    from executorch.extension.llm import runner as et

    made = [et.make_image_input(image)]
    for text, answer in turns:
        made += [et.make_text_input(text), et.make_token_input(answer)]
    return [*made, et.make_text_input(question)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default="xnnpack", choices=["xnnpack", "portable"])
    args = parser.parse_args()
    from executorch.extension.llm.runner import MultimodalRunner as CppRunner

    tokenizer = build_tokenizer(vocab_size=32000)
    spec = ProgramSpec(
        decoder=dataclasses.replace(DecoderSpec.big(), vocab_size=32000, max_context_len=512, max_seq_len=256),
        vision=VisionEncoderSpec(height=128, width=128, fat_channels=64),  # 256 image rows, as Gemma3
        backend=args.backend,
    )
    pte = build_program(spec)
    pm = plugin_manager()
    runner = MultimodalRunner(pte, tokenizer, plugin_manager=pm)
    cpp = CppRunner(str(pte), str(tokenizer))
    image = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))
    config = GenerationConfig(echo=False, temperature=0.0, max_new_tokens=MAX_NEW, ignore_eos=True)

    ours: dict[str, list[float]] = {"turn 1": [], "turn 2": [], "turn 3": [], "turn 1, cached image": []}
    theirs: dict[str, list[float]] = {"turn 1": [], "turn 2": [], "turn 3": []}
    for _ in range(args.repeats + 1):  # the first round warms up
        runner.encoder_cache.clear() if runner.encoder_cache else None
        session = Session(runner)
        turns: list[tuple[str, list[int]]] = []
        for number, question in enumerate(QUESTIONS, start=1):
            content: list[dict[str, Any]] = [{"type": "text", "text": question}]
            if number == 1:
                content.insert(0, {"type": "pixels", "pixels": image})
            took, tokens = ttft_session(session, {"role": "user", "content": content}, config)
            ours[f"turn {number}"].append(took)
            theirs[f"turn {number}"].append(ttft_cpp(cpp, cpp_inputs(image, turns, question)))
            turns.append((question, tokens))
        cached = Session(runner)  # a new conversation about the same image
        took, _ = ttft_session(
            cached,
            {"role": "user", "content": [{"type": "pixels", "pixels": image}, {"type": "text", "text": QUESTIONS[0]}]},
            config,
        )
        ours["turn 1, cached image"].append(took)
    med = {k: statistics.median(v[1:]) * 1e3 for k, v in ours.items()}
    ref = {k: statistics.median(v[1:]) * 1e3 for k, v in theirs.items()}
    print(f"{args.backend}, {pte.stat().st_size / 1e6:.0f} MB program, {args.repeats} repeats (medians)\n")
    print("| turn | mmcore Session TTFT ms | C++ re-send TTFT ms | speed-up |")
    print("|---|---|---|---|")
    for key in ("turn 1", "turn 2", "turn 3"):
        print(f"| {key} | {med[key]:.1f} | {ref[key]:.1f} | {ref[key] / med[key]:.1f}x |")
    print(f"| turn 1, image in encoder cache | {med['turn 1, cached image']:.1f} | {ref['turn 1']:.1f} "
          f"| {med['turn 1'] / med['turn 1, cached image']:.2f}x vs uncached |")  # fmt: skip


if __name__ == "__main__":
    main()
