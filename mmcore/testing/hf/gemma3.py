"""Tiny Gemma 3 (SigLIP vision, 64x64 image -> 16 rows)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from mmcore.testing.hf._hf_files import hf_tokenizer, save_model, write_runner_tokenizer

__all__ = ["Gemma3Family"]

_SPECIALS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
    NEVER_TOKEN,
)
_IMAGE_SIZE = 64
_TOKENS_PER_IMAGE = 16

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<start_of_image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


class Gemma3Family(Family):
    """``Gemma3ForConditionalGeneration`` with untied embeddings and a 256-token sliding window."""

    name = "gemma3"
    modality = "vision"
    model_class = "Gemma3ForConditionalGeneration"
    revision = 1

    def write(self, folder: Path) -> FamilyFacts:
        tf = transformers_api()

        bpe = train_bpe(_SPECIALS, 320, bos="<bos>")
        vocab = bpe.get_vocab_size()
        ids = {name: bpe.token_to_id(name) for name in _SPECIALS}
        text = tf.Gemma3TextConfig(
            vocab_size=vocab,
            sliding_window=256,
            tie_word_embeddings=False,
            pad_token_id=ids["<pad>"],
            bos_token_id=ids["<bos>"],
            eos_token_id=ids["<eos>"],
            **TEXT_SIZES,
        )
        vision = tf.SiglipVisionConfig(image_size=_IMAGE_SIZE, patch_size=8, **ENCODER_SIZES)
        config = tf.Gemma3Config(
            text_config=text,
            vision_config=vision,
            mm_tokens_per_image=_TOKENS_PER_IMAGE,
            boi_token_index=ids["<start_of_image>"],
            eoi_token_index=ids["<end_of_image>"],
            image_token_index=ids["<image_soft_token>"],
            tie_word_embeddings=False,
        )
        save_model(tf.Gemma3ForConditionalGeneration, config, folder)
        tokenizer = hf_tokenizer(
            bpe,
            bos="<bos>",
            eos="<eos>",
            pad="<pad>",
            named={"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"},
        )
        image_processor = tf.Gemma3ImageProcessor(size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE})
        processor = tf.Gemma3Processor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            image_seq_length=_TOKENS_PER_IMAGE,
            chat_template=CHAT_TEMPLATE,
        )
        processor.save_pretrained(folder)
        image_processor.save_pretrained(folder)  # preprocessor_config.json, embedded as program metadata
        write_runner_tokenizer(folder, bos="<bos>")
        return FamilyFacts(
            media_token_id=ids["<image_soft_token>"],
            tokens_per_item=_TOKENS_PER_IMAGE,
            bos_token_id=ids["<bos>"],
            eos_token_ids=(ids["<eos>"], ids["<end_of_turn>"]),
            stop_token_id=ids[NEVER_TOKEN],
            vocab_size=vocab,
            encoder_input_shape=(1, 3, _IMAGE_SIZE, _IMAGE_SIZE),
            tokenizer_file="tokenizer.json",
        )

    def prepare(self, folder: Path, messages: Sequence[Message]) -> HFInputs:
        from mmcore.testing.hf._processing import chat_inputs

        # The exported decoder is causal throughout; token_type_ids would make HF attend bidirectionally in images.
        return chat_inputs(folder, messages, drop=("token_type_ids",), **_pan_and_scan_kwargs(folder))


_PAN_AND_SCAN_KEYS = (
    "do_pan_and_scan",
    "pan_and_scan_min_crop_size",
    "pan_and_scan_max_num_crops",
    "pan_and_scan_min_ratio_to_activate",
)


def _pan_and_scan_kwargs(folder: Path) -> dict[str, Any]:
    """The folder's pan-and-scan settings as processor-call arguments.

    `Gemma3Processor` applies its own defaults (pan-and-scan off, 256-px crops) over the image
    processor's saved settings, so a folder whose `preprocessor_config.json` turns pan-and-scan on
    gets it from HF only when the settings are passed at call time, as users of HF do.
    """
    path = folder / "preprocessor_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    if not config.get("do_pan_and_scan"):
        return {}
    return {key: config[key] for key in _PAN_AND_SCAN_KEYS if config.get(key) is not None}
