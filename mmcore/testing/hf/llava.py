"""Tiny LLaVA (CLIP vision, 32x32 image -> 16 rows; Llama text)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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

__all__ = ["LlavaFamily"]

_SPECIALS = ("<unk>", "<s>", "</s>", "<image>", "<pad>", NEVER_TOKEN)
_IMAGE_SIZE = 32
_PATCH = 8
_TOKENS_PER_IMAGE = (_IMAGE_SIZE // _PATCH) ** 2

#: llava-1.5-hf style: ``USER: <image>\n{text} ASSISTANT:`` (BOS comes from the tokenizer).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>\n' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] + ' ' }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


class LlavaFamily(Family):
    """``LlavaForConditionalGeneration``: CLIP layer -2, CLS dropped ("default" strategy)."""

    name = "llava"
    modality = "vision"
    model_class = "LlavaForConditionalGeneration"
    revision = 1

    def write(self, folder: Path) -> FamilyFacts:
        tf = transformers_api()

        bpe = train_bpe(_SPECIALS, 320, bos="<s>")
        vocab = bpe.get_vocab_size()
        ids = {name: bpe.token_to_id(name) for name in _SPECIALS}
        text = tf.LlamaConfig(
            vocab_size=vocab,
            pad_token_id=ids["<pad>"],
            bos_token_id=ids["<s>"],
            eos_token_id=ids["</s>"],
            tie_word_embeddings=False,
            **TEXT_SIZES,
        )
        vision = tf.CLIPVisionConfig(image_size=_IMAGE_SIZE, patch_size=_PATCH, projection_dim=32, **ENCODER_SIZES)
        config = tf.LlavaConfig(
            vision_config=vision,
            text_config=text,
            image_token_id=ids["<image>"],
            vision_feature_layer=-2,
            vision_feature_select_strategy="default",
            projector_hidden_act="gelu",
        )
        save_model(tf.LlavaForConditionalGeneration, config, folder)
        tokenizer = hf_tokenizer(bpe, bos="<s>", eos="</s>", pad="<pad>", named={"image_token": "<image>"})
        image_processor = tf.CLIPImageProcessor(
            size={"shortest_edge": _IMAGE_SIZE}, crop_size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE}
        )
        processor = tf.LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=_PATCH,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
            chat_template=CHAT_TEMPLATE,
        )
        processor.save_pretrained(folder)
        image_processor.save_pretrained(folder)
        write_runner_tokenizer(folder, bos="<s>")
        return FamilyFacts(
            media_token_id=ids["<image>"],
            tokens_per_item=_TOKENS_PER_IMAGE,
            bos_token_id=ids["<s>"],
            eos_token_ids=(ids["</s>"],),
            stop_token_id=ids[NEVER_TOKEN],
            vocab_size=vocab,
            encoder_input_shape=(1, 3, _IMAGE_SIZE, _IMAGE_SIZE),
            tokenizer_file="tokenizer.json",
        )

    def prepare(self, folder: Path, messages: Sequence[Message]) -> HFInputs:
        from mmcore.testing.hf._processing import chat_inputs

        return chat_inputs(folder, messages)
