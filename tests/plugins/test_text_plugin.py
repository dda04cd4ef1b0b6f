"""mmcore-text: tokenizers built in the test session, compared with ExecuTorch's C++ tokenizers."""

from __future__ import annotations

import base64
import json
import random
import string
import struct
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import mmcore_text
import pytest
from mmcore_text import (
    HFTokenizer,
    Llama2cTokenizer,
    SentencePieceTokenizer,
    TextHandler,
    TextInput,
    TiktokenTokenizer,
)
from mmcore_text.tiktoken_file import LLAMA3_PATTERN, LLAMA3_SPECIAL_TOKENS, RE2_PATTERN

import mmcore
from mmcore.errors import InvalidInputError, TokenizerError
from mmcore.inputs import TokensInput
from mmcore.plugins import PluginManager
from mmcore.registry import PrefillContext
from mmcore.tokenizer import Tokenizer

cpp = pytest.importorskip("pytorch_tokenizers.pytorch_tokenizers_cpp")

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wizards quietly hex "
    "many bright jolly zebras and one small cat reads tokens from the model"
).split()

# ASCII strings whose ids must match the C++ tokenizers (no runs of spaces: see the tiktoken test).
PARITY_STRINGS = [
    "hello world",
    "the quick brown fox",
    "Zebras, cats; and 42 dogs!",
    "x",
    "a\nb\n\nc",
    "trailing space ",
    "it's the model's 2024 tokens",
]


def _sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        punct = rng.choice([".", "!", "?", ",", ""])
        lines.append(" ".join(words).capitalize() + punct + f" {rng.randint(0, 999)}")
    return lines


def _context(tokenizer: Tokenizer | None, *, num_bos: int = 0, num_eos: int = 0) -> PrefillContext:
    return PrefillContext(program=cast(Any, None), tokenizer=tokenizer, num_bos=num_bos, num_eos=num_eos, index=3)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    # Every printable ASCII character appears, so no test string hits an unknown character.
    return [*_sentences(3000), string.printable, "it's the model's\n\nline"]


def _train_hf(corpus: list[str], specials: list[str]) -> Any:
    from tokenizers import Tokenizer as HFBackend
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tok = HFBackend(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=specials, initial_alphabet=[])
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, 0)])
    return tok


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    """A directory with tokenizer.json and tokenizer_config.json (BOS as dict, EOS as str)."""
    root = tmp_path_factory.mktemp("hf")
    tok = _train_hf(corpus, [BOS, EOS])
    tok.save(str(root / "tokenizer.json"))
    config = {"bos_token": {"content": BOS, "special": True}, "eos_token": EOS}
    (root / "tokenizer_config.json").write_text(json.dumps(config))
    return root


@pytest.fixture(scope="session")
def hf_extra_specials(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    """A bare tokenizer.json whose specials make the EOS guess ambiguous and BOS guessable."""
    root = tmp_path_factory.mktemp("hf_extra")
    tok = _train_hf(corpus, [BOS, EOS, "<|image_end|>", "<|im_end|>", "<|end_turn|>"])
    tok.save(str(root / "tokenizer.json"))
    return root / "tokenizer.json"


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    import sentencepiece

    root = tmp_path_factory.mktemp("spm")
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_prefix=str(root / "sp"),
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        minloglevel=2,
    )
    return root / "sp.model"


@pytest.fixture(scope="session")
def tiktoken_path(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    from tiktoken._educational import bpe_train

    root = tmp_path_factory.mktemp("tiktoken")
    ranks = bpe_train("\n".join(corpus[:400]), 300, LLAMA3_PATTERN, visualise=None)
    lines = [f"{base64.b64encode(tok).decode()} {rank}" for tok, rank in sorted(ranks.items(), key=lambda x: x[1])]
    path = root / "tokenizer.model"  # Llama 3 ships its tiktoken file under this name
    path.write_text("\n".join(lines) + "\n")
    return path


def _llama2c_records(spm_model: Path) -> tuple[list[bytes], list[float]]:
    """A llama2.c vocabulary derived from the SentencePiece model, as llama2.c's export does."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    pieces: list[bytes] = []
    scores: list[float] = []
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        if i == sp.bos_id():
            piece = "\n<s>\n"
        elif i == sp.eos_id():
            piece = "\n</s>\n"
        pieces.append(piece.replace("\u2581", " ").encode("utf-8"))
        scores.append(sp.get_score(i))
    return pieces, scores


def _write_llama2c(path: Path, pieces: list[bytes], scores: list[float], header: bytes) -> Path:
    with path.open("wb") as handle:
        handle.write(header)
        for piece, score in zip(pieces, scores, strict=True):
            handle.write(struct.pack("<fi", score, len(piece)))
            handle.write(piece)
    return path


@pytest.fixture(scope="session")
def llama2c_bins(tmp_path_factory: pytest.TempPathFactory, spm_model: Path) -> tuple[Path, Path]:
    """(llama2.c header file, ExecuTorch header file) with the same vocabulary."""
    root = tmp_path_factory.mktemp("llama2c")
    pieces, scores = _llama2c_records(spm_model)
    max_len = max(len(p) for p in pieces)
    original = _write_llama2c(root / "tokenizer.bin", pieces, scores, struct.pack("<i", max_len))
    et_header = struct.pack("<4i", len(pieces), 1, 2, max_len)
    executorch = _write_llama2c(root / "et_tokenizer.bin", pieces, scores, et_header)
    return original, executorch


def _cpp(cls_name: str, path: Path) -> Any:
    tok = getattr(cpp, cls_name)()
    tok.load(str(path))
    return tok


# --------------------------------------------------------------------------- Hugging Face


def test_hf_ids_match_cpp(hf_dir: Path) -> None:
    ours = HFTokenizer.from_path(hf_dir)
    theirs = _cpp("HFTokenizer", hf_dir)
    strings = [*PARITY_STRINGS, "the  quick   fox", f"{BOS}hello{EOS} world", f"dog {EOS}{EOS}cat"]
    for text in strings:
        assert ours.encode(text) == list(theirs.encode(text, 0, 0)), text
        assert ours.encode(text, bos=1) == list(theirs.encode(text, 1, 0)), text
    assert ours.bos_id == theirs.bos_tok() == 0
    assert ours.eos_ids == {theirs.eos_tok()} == {1}
    assert ours.vocab_size == theirs.vocab_size() == ours.backend.get_vocab_size(with_added_tokens=True)


def test_hf_bos_count_differs_from_cpp_by_design(hf_dir: Path) -> None:
    """The C++ HFTokenizer adds BOS through the post-processor only: one BOS for bos=2, none for eos."""
    ours = HFTokenizer.from_path(hf_dir)
    theirs = _cpp("HFTokenizer", hf_dir)
    body = ours.encode("hello world")
    assert list(theirs.encode("hello world", 2, 0)) == [0, *body]
    assert ours.encode("hello world", bos=2) == [0, 0, *body]
    assert list(theirs.encode("hello world", 0, 1)) == [0, *body]
    assert ours.encode("hello world", eos=1) == [*body, 1]
    assert ours.encode("hello world", bos=1, eos=2) == [0, *body, 1, 1]


def test_hf_special_strings_in_text_become_ids(hf_dir: Path) -> None:
    ours = HFTokenizer.from_path(hf_dir)
    ids = ours.encode(f"{BOS}hi{EOS}")
    assert ids[0] == 0 and ids[-1] == 1 and 0 not in ids[1:-1]


def test_hf_decode_round_trip(hf_dir: Path) -> None:
    ours = HFTokenizer.from_path(hf_dir)
    for text in [*PARITY_STRINGS, "the  quick   fox"]:
        assert ours.decode(ours.encode(text, bos=1, eos=1)) == text
    assert ours.decode(ours.encode("hi", bos=1, eos=1), skip_special_tokens=False) == f"{BOS}hi{EOS}"


def test_hf_guesses_bos_eos_by_name_without_config(hf_dir: Path) -> None:
    bare = HFTokenizer.from_path(hf_dir / "tokenizer.json")  # a file: config files are not read
    assert bare.bos_id == 0
    assert bare.eos_ids == {1}


def test_hf_guess_narrows_by_text_and_gives_up_when_ambiguous(hf_extra_specials: Path, tmp_path: Path) -> None:
    tok = HFTokenizer.from_path(hf_extra_specials)
    # "end" is in <|end_of_text|>, <|image_end|>, <|im_end|>, <|end_turn|>: only the first contains "text".
    assert tok.bos_id == 0
    assert tok.eos_ids == {1}

    data = json.loads(hf_extra_specials.read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != EOS]
    ambiguous = tmp_path / "tokenizer.json"
    ambiguous.write_text(json.dumps(data))
    tok = HFTokenizer.from_path(ambiguous)
    assert tok.bos_id == 0
    assert tok.eos_ids == frozenset()
    with pytest.raises(TokenizerError, match="no EOS token"):
        tok.encode("hi", eos=1)


def test_hf_config_files_and_generation_config(hf_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "model"
    root.mkdir()
    (root / "tokenizer.json").write_bytes((hf_dir / "tokenizer.json").read_bytes())
    # special_tokens_map.json wins over tokenizer_config.json, as in the C++ tokenizer.
    (root / "special_tokens_map.json").write_text(json.dumps({"bos_token": {"content": EOS}}))
    (root / "tokenizer_config.json").write_text(json.dumps({"bos_token": BOS, "eos_token": {"content": BOS}}))
    (root / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 7]}))
    tok = HFTokenizer.from_path(root)
    assert tok.bos_id == 1
    assert tok.eos_id == 0
    assert tok.eos_ids == {0, 1, 7}

    (root / "generation_config.json").write_text(json.dumps({"eos_token_id": 5}))
    assert HFTokenizer.from_path(root).eos_ids == {0, 5}


def test_hf_errors_name_the_path(hf_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="does not exist"):
        HFTokenizer.from_path(tmp_path / "missing.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TokenizerError, match=r"empty holds no tokenizer\.json"):
        HFTokenizer.from_path(empty)
    broken = tmp_path / "broken" / "tokenizer.json"
    broken.parent.mkdir()
    broken.write_text('{"model": {"type": "BPE", "vocab": ')
    with pytest.raises(TokenizerError, match=r"cannot load Hugging Face tokenizer .*broken"):
        mmcore_text.load(broken.parent)
    bad_config = tmp_path / "bad_config"
    bad_config.mkdir()
    (bad_config / "tokenizer.json").write_bytes((hf_dir / "tokenizer.json").read_bytes())
    (bad_config / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(TokenizerError, match=r"tokenizer_config\.json"):
        HFTokenizer.from_path(bad_config)


# --------------------------------------------------------------------------- SentencePiece


def test_sentencepiece_ids_match_cpp(spm_model: Path) -> None:
    ours = SentencePieceTokenizer.from_file(spm_model)
    theirs = _cpp("SPTokenizer", spm_model)
    for text in [*PARITY_STRINGS, "the  quick   fox", "<s>hi</s> there", "caf\u00e9 \u4e16"]:
        for bos, eos in ((0, 0), (1, 0), (1, 1), (2, 3)):
            assert ours.encode(text, bos=bos, eos=eos) == list(theirs.encode(text, bos, eos)), (text, bos, eos)
    assert ours.bos_id == theirs.bos_tok() == 1
    assert ours.eos_ids == {theirs.eos_tok()} == {2}
    assert ours.vocab_size == theirs.vocab_size() == 400


def test_sentencepiece_decode(spm_model: Path) -> None:
    ours = SentencePieceTokenizer.from_file(spm_model)
    # The model's normalizer folds newlines and runs of spaces, so only single-spaced text round-trips.
    for text in ["hello world", "Zebras, cats; and 42 dogs!", "x", "it's the model's 2024 tokens", "caf\u00e9 \u4e16"]:
        assert ours.decode(ours.encode(text, bos=1, eos=1)) == text
    assert ours.decode(ours.encode("hi", bos=1, eos=1), skip_special_tokens=False) == "<s>hi</s>"


# --------------------------------------------------------------------------- tiktoken


def test_tiktoken_layout_and_ids_match_cpp(tiktoken_path: Path) -> None:
    ours = TiktokenTokenizer.from_file(tiktoken_path)
    theirs = _cpp("Tiktoken", tiktoken_path)
    assert len(LLAMA3_SPECIAL_TOKENS) == 256
    assert ours.vocab_size == theirs.vocab_size() == 300 + 256
    assert ours.bos_id == theirs.bos_tok() == 300
    assert theirs.eos_tok() == 301
    assert ours.eos_ids == {301, ours.special_tokens["<|eot_id|>"]} == {301, 309}
    strings = [*PARITY_STRINGS, f"{BOS}hello<|eot_id|> dog", "<|start_header_id|>user<|end_header_id|>\n\nhi"]
    for text in strings:
        for bos, eos in ((0, 0), (1, 0), (1, 1), (2, 2)):
            assert ours.encode(text, bos=bos, eos=eos) == list(theirs.encode(text, bos, eos)), (text, bos, eos)


def test_tiktoken_pattern_difference_from_cpp(tiktoken_path: Path) -> None:
    """The C++ Tiktoken drops Llama 3's `\\s+(?!\\S)` look-ahead: runs of spaces before a word split apart."""
    llama3 = TiktokenTokenizer.from_file(tiktoken_path)
    re2 = TiktokenTokenizer.from_file(tiktoken_path, pattern=RE2_PATTERN)
    theirs = _cpp("Tiktoken", tiktoken_path)
    for text in ["the  quick   fox", "  lead", *PARITY_STRINGS]:
        assert re2.encode(text, bos=1) == list(theirs.encode(text, 1, 0)), text
    text = "the  quick"
    assert llama3.decode(llama3.encode(text)) == re2.decode(re2.encode(text)) == text
    assert llama3.encode(text) != list(theirs.encode(text, 0, 0))


def test_tiktoken_decode(tiktoken_path: Path) -> None:
    ours = TiktokenTokenizer.from_file(tiktoken_path)
    for text in [*PARITY_STRINGS, "the  quick   fox"]:
        assert ours.decode(ours.encode(text, bos=1, eos=1)) == text
    assert ours.decode(ours.encode("hi<|eot_id|>", bos=1), skip_special_tokens=False) == f"{BOS}hi<|eot_id|>"


# --------------------------------------------------------------------------- llama2.c


def test_llama2c_ids_match_cpp(llama2c_bins: tuple[Path, Path]) -> None:
    original, executorch = llama2c_bins
    ours = Llama2cTokenizer.from_file(original)
    ours_et = Llama2cTokenizer.from_file(executorch)
    theirs = _cpp("Llama2cTokenizer", executorch)  # the C++ reads ExecuTorch's four-field header only
    assert ours.vocab_size == ours_et.vocab_size == theirs.vocab_size() == 400
    assert (ours.bos_id, ours.eos_ids) == (ours_et.bos_id, ours_et.eos_ids) == (1, frozenset({2}))
    assert (theirs.bos_tok(), theirs.eos_tok()) == (1, 2)
    long_text = " ".join(_sentences(25, seed=7)) + " \u00e9\u00e9 zz"  # long merges, byte fallback
    for text in [*PARITY_STRINGS, "the  quick   fox", "caf\u00e9 \u4e16 \U0001f600", long_text]:
        for bos, eos in ((0, 0), (1, 0), (1, 1), (2, 2)):
            expected = list(theirs.encode(text, bos, eos))
            assert ours.encode(text, bos=bos, eos=eos) == expected, (text, bos, eos)
            assert ours_et.encode(text, bos=bos, eos=eos) == expected, (text, bos, eos)


def test_llama2c_decode(llama2c_bins: tuple[Path, Path]) -> None:
    ours = Llama2cTokenizer.from_file(llama2c_bins[0])
    for text in [*PARITY_STRINGS, "caf\u00e9 \u4e16 \U0001f600"]:
        assert ours.decode(ours.encode(text, bos=1, eos=1)) == text
        assert ours.decode(ours.encode(text)) == text
    assert ours.encode("") == []
    assert ours.encode("", bos=1, eos=1) == [1, 2]


def test_decode_rejects_unknown_ids(
    hf_dir: Path, spm_model: Path, tiktoken_path: Path, llama2c_bins: tuple[Path, Path]
) -> None:
    for path in (hf_dir, spm_model, tiktoken_path, llama2c_bins[0]):
        tok = mmcore_text.load(path)
        with pytest.raises(InvalidInputError, match=f"id {tok.vocab_size} is outside the vocabulary"):
            tok.decode([5, tok.vocab_size])


# --------------------------------------------------------------------------- loading and errors


def test_load_picks_the_right_loader(
    hf_dir: Path, spm_model: Path, tiktoken_path: Path, llama2c_bins: tuple[Path, Path], tmp_path: Path
) -> None:
    assert isinstance(mmcore_text.load(hf_dir), HFTokenizer)
    assert isinstance(mmcore_text.load(hf_dir / "tokenizer.json"), HFTokenizer)
    assert isinstance(mmcore_text.load(tiktoken_path), TiktokenTokenizer)  # a .model that is tiktoken
    assert isinstance(mmcore_text.load(spm_model), SentencePieceTokenizer)
    assert isinstance(mmcore_text.load(llama2c_bins[0]), Llama2cTokenizer)
    assert isinstance(mmcore_text.load(llama2c_bins[1]), Llama2cTokenizer)
    renamed = tmp_path / "my_tokenizer.json"
    renamed.write_bytes((hf_dir / "tokenizer.json").read_bytes())
    assert isinstance(mmcore_text.load(renamed), HFTokenizer)  # the .json fallback
    for tok in (mmcore_text.load(hf_dir), mmcore_text.load(spm_model)):
        assert isinstance(tok, mmcore.Tokenizer)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("tokenizer.model", b"IQ== 0\nIg== 1\nnot a line\n", "line 3"),
        ("sp.model", b"\x0a\x03abc garbage", "cannot load SentencePiece model"),
        ("tokenizer.bin", struct.pack("<i", 8) + b"\x00\x00", "not a llama2.c tokenizer.bin"),
        ("tokenizer.txt", b"hello", "no mmcore-text loader recognises"),
    ],
)
def test_corrupt_files_raise_tokenizer_error(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TokenizerError, match=message) as info:
        mmcore_text.load(path)
    assert str(path) in str(info.value)


def test_missing_path_raises_tokenizer_error(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="does not exist"):
        mmcore_text.load(tmp_path / "nope")
    for cls in (SentencePieceTokenizer, TiktokenTokenizer, Llama2cTokenizer):
        with pytest.raises(TokenizerError, match="does not exist"):
            cls.from_file(tmp_path / "nope")


def test_bad_counts_are_rejected(spm_model: Path) -> None:
    tok = SentencePieceTokenizer.from_file(spm_model)
    with pytest.raises(InvalidInputError, match="bos=-1"):
        tok.encode("hi", bos=-1)


# --------------------------------------------------------------------------- handler and plugin


def test_text_handler(spm_model: Path) -> None:
    tok = SentencePieceTokenizer.from_file(spm_model)
    handler = TextHandler()
    prepared = handler.preprocess("hello world", _context(tok, num_bos=1, num_eos=1))
    assert prepared == TokensInput(tok.encode("hello world", bos=1, eos=1))
    assert handler.prefill(prepared, _context(tok)) is prepared
    assert handler.preprocess(TextInput("hello world"), _context(tok, num_bos=1, num_eos=1)) == prepared
    assert len(handler.preprocess("", _context(tok))) == 0
    assert handler.parse_cli("hi there") == TextInput("hi there")
    with pytest.raises(InvalidInputError, match=r"input 3: .*pass a tokenizer"):
        handler.preprocess("hi", _context(None))


@pytest.fixture
def plugin_manager() -> Iterator[PluginManager]:
    pm = PluginManager(entry_points=False)
    pm.register(mmcore_text)
    yield pm


def test_registry_round_trip(plugin_manager: PluginManager, hf_dir: Path, spm_model: Path, tmp_path: Path) -> None:
    assert [loader.name for loader in plugin_manager.tokenizer_loaders()] == [
        "hf",
        "tiktoken",
        "sentencepiece",
        "llama2c",
        "tekken",
        "hf-json",
    ]
    assert isinstance(mmcore.load_tokenizer(hf_dir, plugin_manager=plugin_manager), HFTokenizer)
    assert isinstance(mmcore.load_tokenizer(spm_model, plugin_manager=plugin_manager), SentencePieceTokenizer)
    registry = plugin_manager.modality_registry()
    assert isinstance(registry.handler_for("hi"), TextHandler)
    assert isinstance(registry.handler_for(TextInput("hi")), TextHandler)
    assert plugin_manager.failures == []
    with pytest.raises(TokenizerError, match="does not exist"):
        mmcore.load_tokenizer(tmp_path / "missing", plugin_manager=plugin_manager)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TokenizerError, match="no installed tokenizer loader recognises"):
        mmcore.load_tokenizer(empty, plugin_manager=plugin_manager)


def test_installed_entry_point_is_found() -> None:
    try:
        metadata.distribution("mmcore-text")
    except metadata.PackageNotFoundError:
        pytest.skip("mmcore-text is not installed (pip install -e plugins/mmcore-text)")
    pm = PluginManager(allow=["text"], block=[])
    assert "text" in pm.plugin_names()
    infos = {info.name: info for info in pm.plugin_infos()}
    assert infos["text"].modalities == ["text"]
    assert infos["text"].distribution == "mmcore-text"
    assert "hf" in infos["text"].tokenizer_loaders
