"""The byte-level streaming fast path gives exactly the text of the window-decoding path."""

from __future__ import annotations

import random

import pytest

from mmcore.streaming import TextStreamer

TEXTS = [
    "héllo wörld, ça va? 日本語のテキスト 🎉🙂 naïve café — “quotes” ± ∑",
    "plain ascii text with numbers 12345 and symbols #$%",
    "Ελληνικά και русский текст, emoji 👩‍👩‍👧 and more",
]


@pytest.fixture(scope="module")
def byte_level_tokenizer(tmp_path_factory):
    import mmcore_text
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TEXTS * 20, trainer=trainer)
    path = tmp_path_factory.mktemp("bytelevel") / "tokenizer.json"
    tok.save(str(path))
    loaded = mmcore_text.load(path)
    assert callable(getattr(loaded, "token_bytes", None))
    return loaded


def stream(tokenizer, ids, *, fast: bool, stop=()):
    streamer = TextStreamer(tokenizer, stop=stop)
    if not fast:
        streamer._token_bytes = None  # force the window-decoding path
    pieces = [streamer.push(i) for i in ids] + [streamer.flush()]
    return [p for p in pieces if p], streamer


@pytest.mark.parametrize("text", TEXTS)
def test_fast_and_window_paths_agree(byte_level_tokenizer, text):
    ids = [0, *byte_level_tokenizer.encode(text), 1]
    fast, _ = stream(byte_level_tokenizer, ids, fast=True)
    slow, _ = stream(byte_level_tokenizer, ids, fast=False)
    assert "".join(fast) == "".join(slow) == byte_level_tokenizer.decode(ids) == text
    assert all("\ufffd" not in p for p in fast)


def test_random_ids_stream_to_the_full_decode(byte_level_tokenizer):
    """Even ids that make invalid UTF-8: the pieces add up to the tokenizer's own decode."""
    rng = random.Random(0)
    for _ in range(50):
        ids = [rng.randrange(byte_level_tokenizer.vocab_size) for _ in range(rng.randrange(1, 40))]
        fast, _ = stream(byte_level_tokenizer, ids, fast=True)
        full = byte_level_tokenizer.decode(ids)
        joined = "".join(fast)
        # the full decode, less at most an unfinished last character
        assert full.startswith(joined) and set(full[len(joined) :]) <= {"\ufffd"}


@pytest.mark.parametrize("stop", [("ça",), ("🙂 n",), ("text", "ext w")])
def test_stop_strings_agree(byte_level_tokenizer, stop):
    for text in TEXTS:
        ids = byte_level_tokenizer.encode(text)
        fast, f = stream(byte_level_tokenizer, ids, fast=True, stop=stop)
        slow, s = stream(byte_level_tokenizer, ids, fast=False, stop=stop)
        assert "".join(fast) == "".join(slow) and f.stopped == s.stopped
