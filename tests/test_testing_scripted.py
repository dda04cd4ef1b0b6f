"""`mmcore.testing.build_scripted_program`: a program whose answer is fixed, whatever it is asked."""

from __future__ import annotations

import pytest

import mmcore
from mmcore.testing import ScriptedProgram, build_scripted_program, photo_like

PIECES = ("<img src=x", " onerror=alert(1)>", " then ", "<script>", "alert(2)", "</script>")


@pytest.fixture(scope="module")
def scripted() -> ScriptedProgram:
    return build_scripted_program(PIECES)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_answers_the_script_whatever_the_prompt(scripted: ScriptedProgram, temperature: float) -> None:
    pytest.importorskip("mmcore_image")
    model = mmcore.open_model(scripted.program, tokenizer=scripted.tokenizer)
    config = mmcore.GenerationConfig(temperature=temperature, seed=7, max_new_tokens=32)
    prompts = [
        "hello",
        "a longer question, with one of the pieces <script> inside",
        [{"type": "image", "image": photo_like(32, 32)}, {"type": "text", "text": "what is it?"}],
    ]
    for content in prompts:
        reply = model.chat([{"role": "user", "content": content}], config)
        assert (reply.text, reply.stop_reason) == (scripted.text, "eos")
        assert len(reply.tokens) == len(PIECES) + 1  # one token per piece, then EOS
    # the table looks only at the last token: a prompt ending in a piece continues from it
    reply = model.chat([{"role": "user", "content": "ends in <script>"}], config)
    assert reply.text == "alert(2)</script>"


def test_rejects_repeated_pieces() -> None:
    with pytest.raises(ValueError, match="repeated"):
        build_scripted_program(["a", "b", "a"])
