"""Tiny Voxtral (Whisper-style encoder, 128 mel bins, 2-s chunks of 200 frames -> 25 rows; Tekken tokenizer)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import AddedToken, Tokenizer, models

from mmcore.testing.hf._bpe import train_bpe
from mmcore.testing.hf._family import (
    ENCODER_SIZES,
    NEVER_TOKEN,
    TEXT_SIZES,
    Family,
    FamilyFacts,
    HFInputs,
    Message,
    transformers_api,
)
from mmcore.testing.hf._hf_files import RUNNER_TOKENIZER_DIR, save_model
from mmcore.testing.hf._tekken import TEKKEN_SPECIALS, TekkenText, write_tekken

__all__ = ["SAMPLING_RATE", "VoxtralFamily"]

SAMPLING_RATE = 16_000
_HOP = 160
_N_FFT = 400
_MELS = 128
_CHUNK_FRAMES = 200  # encoder max_source_positions 100 after its stride-2 conv
_CHUNK_SECONDS = _CHUNK_FRAMES * _HOP // SAMPLING_RATE
_TOKENS_PER_CHUNK = _CHUNK_FRAMES // 2 // 4  # 4 encoder positions per projector row
_ENCODER_HIDDEN = ENCODER_SIZES["hidden_size"]


def _tekken_audio_section() -> dict[str, Any]:
    """The ``audio`` block of ``tekken.json``."""
    return {
        "sampling_rate": SAMPLING_RATE,
        "frame_rate": _TOKENS_PER_CHUNK / _CHUNK_SECONDS,
        "chunk_length_s": float(_CHUNK_SECONDS),
        "audio_encoding_config": {"num_mel_bins": _MELS, "hop_length": _HOP, "window_size": _N_FFT},
    }


def _write_runner_tokenizer(folder: Path, vocab_size: int) -> None:
    """A tokenizer for ExecuTorch's C++ runner whose every id streams as a distinct ASCII piece.

    Tekken's single-byte tokens are not valid UTF-8 on their own, which the runner binding cannot
    stream; the runner only needs an id <-> piece bijection of the right size and the stop token.
    """
    pieces = [TEKKEN_SPECIALS[i] if i < len(TEKKEN_SPECIALS) else f"<|t{i}|>" for i in range(vocab_size)]
    tok = Tokenizer(models.BPE(vocab={p: i for i, p in enumerate(pieces)}, merges=[]))
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in pieces])
    target = folder / RUNNER_TOKENIZER_DIR
    target.mkdir()
    tok.save(str(target / "tokenizer.json"))
    config = {"bos_token": "<s>", "eos_token": NEVER_TOKEN, "tokenizer_class": "PreTrainedTokenizerFast"}
    (target / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


class VoxtralFamily(Family):
    """``VoxtralForConditionalGeneration`` with a ``tekken.json`` tokenizer.

    The prompt is built as mistral-common renders it: ``<s>[INST]`` then, per content item,
    ``[BEGIN_AUDIO]`` + 25 ``[AUDIO]`` per 2-s chunk or the text, then ``[/INST]``.
    """

    name = "voxtral"
    modality = "audio"
    model_class = "VoxtralForConditionalGeneration"
    revision = 1

    def write(self, folder: Path) -> FamilyFacts:
        tf = transformers_api()

        bpe = train_bpe(["<unk>"], 300)
        vocab = write_tekken(folder / "tekken.json", bpe, _tekken_audio_section())
        tekken = TekkenText.from_file(folder / "tekken.json")
        audio = {
            "num_mel_bins": _MELS,
            "max_source_positions": _CHUNK_FRAMES // 2,
            **ENCODER_SIZES,
            "intermediate_size": 4 * _ENCODER_HIDDEN,  # the projector reads 4 positions per row
        }
        text = {
            "model_type": "llama",
            "vocab_size": vocab,
            "bos_token_id": tekken.special_id("<s>"),
            "eos_token_id": tekken.special_id("</s>"),
            "pad_token_id": tekken.special_id("<pad>"),
            "tie_word_embeddings": False,
            **TEXT_SIZES,
        }
        config = tf.VoxtralConfig(audio_config=audio, text_config=text, audio_token_id=tekken.special_id("[AUDIO]"))
        save_model(tf.VoxtralForConditionalGeneration, config, folder)
        extractor = tf.WhisperFeatureExtractor(
            feature_size=_MELS,
            sampling_rate=SAMPLING_RATE,
            hop_length=_HOP,
            chunk_length=_CHUNK_SECONDS,
            n_fft=_N_FFT,
        )
        extractor.save_pretrained(folder)
        _write_runner_tokenizer(folder, vocab)
        return FamilyFacts(
            media_token_id=tekken.special_id("[AUDIO]"),
            tokens_per_item=_TOKENS_PER_CHUNK,
            bos_token_id=tekken.special_id("<s>"),
            eos_token_ids=(tekken.special_id("</s>"),),
            stop_token_id=tekken.special_id(NEVER_TOKEN),
            vocab_size=vocab,
            encoder_input_shape=(2, _MELS, _CHUNK_FRAMES),
            tokenizer_file="tekken.json",
        )

    def prepare(self, folder: Path, messages: Sequence[Message]) -> HFInputs:
        tf = transformers_api()

        tekken = TekkenText.from_file(folder / "tekken.json")
        extractor = tf.WhisperFeatureExtractor.from_pretrained(folder)
        ids = [tekken.special_id("<s>")]
        chunks: list[torch.Tensor] = []
        for message in messages:
            if message["role"] != "user":
                raise ValueError(f"only user messages are supported, got {message['role']!r}")
            ids.append(tekken.special_id("[INST]"))
            content = message["content"]
            items = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for item in items:
                if item["type"] == "text":
                    ids += tekken.encode(item["text"])
                elif item["type"] == "audio":
                    features = _features(extractor, np.asarray(item["audio"], dtype=np.float32))
                    chunks.append(features)
                    ids += [tekken.special_id("[BEGIN_AUDIO]")]
                    ids += [tekken.special_id("[AUDIO]")] * (_TOKENS_PER_CHUNK * features.shape[0])
                else:
                    raise ValueError(f"unsupported content type {item['type']!r}")
            ids.append(tekken.special_id("[/INST]"))
        input_ids = torch.tensor([ids])
        kwargs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        media = torch.cat(chunks) if chunks else None
        if media is not None:
            kwargs["input_features"] = media
        return HFInputs(input_ids=ids, media=media, model_kwargs=kwargs)


def _features(extractor: Any, audio: np.ndarray) -> torch.Tensor:
    """``[n_chunks, 128, 200]`` log-mel features, as ``VoxtralProcessor`` computes them."""
    batch = extractor(
        audio,
        sampling_rate=SAMPLING_RATE,
        padding=True,
        truncation=False,
        pad_to_multiple_of=extractor.n_samples,
        return_tensors="pt",
    )
    features: torch.Tensor = batch["input_features"]
    return features.reshape(_MELS, -1, _CHUNK_FRAMES).transpose(0, 1).contiguous()
