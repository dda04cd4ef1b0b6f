"""mmcore-adapters: model adapters for Gemma 3, Gemma 4, LLaVA, SmolVLM, Voxtral, ExecuTorch's LLaVA and the
generic contract."""

from __future__ import annotations

from mmcore import hookimpl
from mmcore.adapters import AdapterRegistrar, ModelAdapter
from mmcore_adapters.base import HFChatAdapter, Placeholder
from mmcore_adapters.executorch_llava import LLAVA_SYSTEM_PROMPT, ExecuTorchLlavaAdapter
from mmcore_adapters.gemma3 import Gemma3Adapter
from mmcore_adapters.gemma4 import Gemma4Adapter
from mmcore_adapters.generic import GenericAdapter
from mmcore_adapters.llava import LlavaAdapter
from mmcore_adapters.renderer import MediaRule, SegmentRenderer, TemplateRenderer, fixed_count
from mmcore_adapters.smolvlm import SmolVLMAdapter
from mmcore_adapters.template import ChatTemplate
from mmcore_adapters.voxtral import VOXTRAL_TEMPLATE, VoxtralAdapter

__all__ = [
    "LLAVA_SYSTEM_PROMPT",
    "VOXTRAL_TEMPLATE",
    "ChatTemplate",
    "ExecuTorchLlavaAdapter",
    "Gemma3Adapter",
    "Gemma4Adapter",
    "GenericAdapter",
    "HFChatAdapter",
    "LlavaAdapter",
    "MediaRule",
    "Placeholder",
    "SegmentRenderer",
    "SmolVLMAdapter",
    "TemplateRenderer",
    "VoxtralAdapter",
    "builtin_adapters",
    "fixed_count",
]

__version__ = "0.1.0"


def builtin_adapters() -> list[ModelAdapter]:
    """This package's adapters."""
    return [
        Gemma3Adapter(),
        Gemma4Adapter(),
        LlavaAdapter(),
        SmolVLMAdapter(),
        VoxtralAdapter(),
        ExecuTorchLlavaAdapter(),
        GenericAdapter(),
    ]


@hookimpl
def mmcore_register_adapters(registry: AdapterRegistrar) -> None:
    """Register gemma3, gemma4, llava, smolvlm, voxtral, executorch-llava and generic."""
    for adapter in builtin_adapters():
        registry.add(adapter)
