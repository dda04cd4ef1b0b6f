"""Tiny SmolVLM (64x64 image, no splitting, pixel shuffle 2 -> 16 rows; Llama text)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

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

__all__ = ["SmolVLMFamily", "expand_image_tokens"]

_IMAGE = "<image>"
_FAKE = "<fake_token_around_image>"
_GLOBAL = "<global-img>"
_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<end_of_utterance>", _FAKE, _GLOBAL, _IMAGE, NEVER_TOKEN)
_IMAGE_SIZE = 64
_PATCH = 8
_SCALE = 2
_TOKENS_PER_IMAGE = (_IMAGE_SIZE // _PATCH) ** 2 // _SCALE**2

#: SmolVLM's template: ``<|im_start|>User:<image>{text}<end_of_utterance>\nAssistant:``.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
    "{% else %}{{ ':' if message['content'][0]['type'] == 'image' else ': ' }}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'text' %}{{ item['text'] }}{% elif item['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def expand_image_tokens(prompt: str, tokens_per_image: int = _TOKENS_PER_IMAGE) -> str:
    """What ``SmolVLMProcessor`` makes of each ``<image>`` of an unsplit image."""
    return prompt.replace(_IMAGE, f"{_FAKE}{_GLOBAL}{_IMAGE * tokens_per_image}{_FAKE}")


def _expand_split_images(prompt: str, rows: Sequence[int], cols: Sequence[int]) -> str:
    """Each ``<image>`` of ``prompt`` expanded as the processor expands it for its crop grid.

    ``SmolVLMProcessor`` cannot be imported without torchvision; Idefics3's processor module has
    the same prompt function (``get_image_prompt_string``) and imports without it.
    """
    from transformers.models.idefics3.processing_idefics3 import get_image_prompt_string

    pieces = prompt.split(_IMAGE)
    if len(pieces) - 1 != len(rows):
        raise ValueError(f"the prompt holds {len(pieces) - 1} {_IMAGE} markers for {len(rows)} images")
    out = [pieces[0]]
    for r, c, after in zip(rows, cols, pieces[1:], strict=True):
        out += [get_image_prompt_string(r, c, _TOKENS_PER_IMAGE, _FAKE, _IMAGE, _GLOBAL), after]  # type: ignore[no-untyped-call]
    return "".join(out)


class SmolVLMFamily(Family):
    """``SmolVLMForConditionalGeneration`` with image splitting off.

    ``SmolVLMProcessor`` cannot be imported without torchvision, so prompts are expanded here and
    images go through ``SmolVLMImageProcessor``.
    """

    name = "smolvlm"
    modality = "vision"
    model_class = "SmolVLMForConditionalGeneration"
    revision = 1

    def write(self, folder: Path) -> FamilyFacts:
        tf = transformers_api()

        bpe = train_bpe(_SPECIALS, 320)
        vocab = bpe.get_vocab_size()
        ids = {name: bpe.token_to_id(name) for name in _SPECIALS}
        text = {
            "model_type": "llama",
            "vocab_size": vocab,
            "pad_token_id": ids["<|endoftext|>"],
            "bos_token_id": ids["<|im_start|>"],
            "eos_token_id": ids["<end_of_utterance>"],
            "tie_word_embeddings": False,
            **TEXT_SIZES,
        }
        vision = {"image_size": _IMAGE_SIZE, "patch_size": _PATCH, **ENCODER_SIZES}
        config = tf.SmolVLMConfig(
            vision_config=vision,
            text_config=text,
            scale_factor=_SCALE,
            image_token_id=ids[_IMAGE],
            pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=False,
        )
        save_model(tf.SmolVLMForConditionalGeneration, config, folder)
        tokenizer = hf_tokenizer(
            bpe,
            bos="<|im_start|>",
            eos="<end_of_utterance>",
            pad="<|endoftext|>",
            named={"image_token": _IMAGE, "fake_image_token": _FAKE, "global_image_token": _GLOBAL},
        )
        tokenizer.chat_template = CHAT_TEMPLATE
        tokenizer.save_pretrained(folder)
        image_processor = tf.SmolVLMImageProcessor(
            size={"longest_edge": _IMAGE_SIZE},
            max_image_size={"longest_edge": _IMAGE_SIZE},
            do_image_splitting=False,
        )
        image_processor.save_pretrained(folder)
        processor_config = {"processor_class": "SmolVLMProcessor", "image_seq_len": _TOKENS_PER_IMAGE}
        (folder / "processor_config.json").write_text(json.dumps(processor_config, indent=2) + "\n")
        write_runner_tokenizer(folder, bos="<|im_start|>")
        return FamilyFacts(
            media_token_id=ids[_IMAGE],
            tokens_per_item=_TOKENS_PER_IMAGE,
            bos_token_id=ids["<|im_start|>"],
            eos_token_ids=(ids["<end_of_utterance>"],),
            stop_token_id=ids[NEVER_TOKEN],
            vocab_size=vocab,
            encoder_input_shape=(1, 3, _IMAGE_SIZE, _IMAGE_SIZE),
            tokenizer_file="tokenizer.json",
        )

    def prepare(self, folder: Path, messages: Sequence[Message]) -> HFInputs:
        tf = transformers_api()

        tokenizer = tf.AutoTokenizer.from_pretrained(folder)
        prompt = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        images = [
            item["image"]
            for message in messages
            if not isinstance(message["content"], str)
            for item in message["content"]
            if item["type"] == "image"
        ]
        media = None
        pixels: dict[str, Any] = {}
        if images:
            image_processor = tf.SmolVLMImageProcessor.from_pretrained(folder)
            pixels = image_processor(images, return_tensors="pt", return_row_col_info=True)
            prompt = _expand_split_images(prompt, pixels["rows"][0], pixels["cols"][0])
            media = pixels["pixel_values"].flatten(0, 1)
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
        kwargs: dict[str, torch.Tensor] = {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}
        if images:
            kwargs["pixel_values"] = pixels["pixel_values"]
            kwargs["pixel_attention_mask"] = pixels["pixel_attention_mask"]
        return HFInputs(input_ids=[int(i) for i in ids["input_ids"][0]], media=media, model_kwargs=kwargs)

    def export_patches(self) -> contextlib.AbstractContextManager[None]:
        return _export_patches()


class _PreTrainingLoader:
    """Stands in for ``AutoModelForPreTraining``, which has no SmolVLM entry."""

    @staticmethod
    def from_pretrained(*args: Any, **kwargs: Any) -> Any:
        tf = transformers_api()

        return tf.SmolVLMForConditionalGeneration.from_pretrained(*args, **kwargs)


def _encode_image(self: Any, input_features: torch.Tensor) -> torch.Tensor:
    """Exportable image encoder for one unsplit ``[1, 3, S, S]`` image (no data-dependent padding checks)."""
    hidden = self.model.model.vision_model(pixel_values=input_features).last_hidden_state
    return self.model.model.connector(hidden)  # type: ignore[no-any-return]


def _embed_patches(self: Any, pixel_values: torch.Tensor, patch_attention_mask: torch.Tensor) -> torch.Tensor:
    """Patch embeddings plus positions ``0..N-1``: exact for a full, unpadded ``image_size`` image."""
    patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
    positions = torch.arange(patches.shape[1], device=pixel_values.device)
    return patches + self.position_embedding(positions)[None]  # type: ignore[no-any-return]


@contextlib.contextmanager
def _export_patches() -> Iterator[None]:
    """Make SmolVLM loadable and its vision encoder traceable by optimum-executorch, then undo it."""
    from optimum.exporters.executorch import integrations
    from optimum.exporters.executorch.tasks import multimodal_text_to_text as task
    from transformers.models.smolvlm import modeling_smolvlm

    with contextlib.ExitStack() as stack:
        for owner, name, value in (
            (task, "AutoModelForPreTraining", _PreTrainingLoader),
            (integrations.VisionExportableModule, "forward", _encode_image),
            (modeling_smolvlm.SmolVLMVisionEmbeddings, "forward", _embed_patches),
        ):
            stack.enter_context(_patched(owner, name, value))
        yield


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``owner.name = value`` for the block."""
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)
