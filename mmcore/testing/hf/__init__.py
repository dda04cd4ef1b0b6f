"""Tiny random-weight Hugging Face multimodal models, exported with optimum-executorch, for parity tests.

Needs the ``hf`` extra (optimum-executorch, transformers). Build and export once per cache
directory, then compare a runner with Hugging Face ``generate``::

    model_dir = build_hf_model("llava")
    pte = export_hf_program("llava")
    inputs = hf_inputs("llava", model_dir, messages)       # prompt ids + pixel_values
    expected = hf_generate("llava", model_dir, inputs, max_new_tokens=16)
"""

from mmcore.testing.hf._family import NEVER_TOKEN, HFInputs, Message, Modality
from mmcore.testing.hf.build import (
    FAMILIES,
    HF_REVISION,
    FamilyName,
    HFModelDir,
    build_hf_model,
    build_hf_variant,
    hf_cache_key,
)
from mmcore.testing.hf.export import MAX_LENGTH, ExportOptions, Recipe, export_hf_folder, export_hf_program
from mmcore.testing.hf.reference import hf_generate, hf_inputs, load_hf_model, processor_segments

__all__ = [
    "FAMILIES",
    "HF_REVISION",
    "MAX_LENGTH",
    "NEVER_TOKEN",
    "ExportOptions",
    "FamilyName",
    "HFInputs",
    "HFModelDir",
    "Message",
    "Modality",
    "Recipe",
    "build_hf_model",
    "build_hf_variant",
    "export_hf_folder",
    "export_hf_program",
    "hf_cache_key",
    "hf_generate",
    "hf_inputs",
    "load_hf_model",
    "processor_segments",
]
