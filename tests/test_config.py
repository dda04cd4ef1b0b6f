"""GenerationConfig validation and ExecuTorch's resolve_max_new_tokens table."""

from __future__ import annotations

import pytest
from pydantic import Field, ValidationError

from mmcore import ConfigError, GenerationConfig, resolve_max_new_tokens


def test_defaults_follow_executorch():
    config = GenerationConfig()
    assert (config.echo, config.max_new_tokens, config.seq_len, config.temperature) == (True, -1, -1, 0.8)
    assert (config.num_bos, config.num_eos, config.ignore_eos, config.warming) == (0, 0, False, False)


@pytest.mark.parametrize(
    ("seq_len", "max_new", "expected"),
    [
        (-1, -1, 100 - 30),
        (-1, 20, 20),
        (-1, 500, 70),
        (50, -1, 20),
        (500, -1, 70),
        (50, 5, 5),
        (50, 40, 20),
        (20, -1, 0),
    ],
)
def test_resolve_max_new_tokens_matches_irunner(seq_len, max_new, expected):
    assert resolve_max_new_tokens(100, 30, seq_len=seq_len, max_new_tokens=max_new) == expected
    config = GenerationConfig(seq_len=seq_len, max_new_tokens=max_new)
    assert config.resolve_max_new_tokens(100, 30) == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("temperature", float("nan")),
        ("temperature", "hot"),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("top_k", -1),
        ("max_new_tokens", 0),
        ("max_new_tokens", -2),
        ("max_new_tokens", 1.5),
        ("seq_len", 0),
        ("num_bos", -1),
        ("num_eos", True),
        ("seed", -1),
        ("stop", [""]),
        ("stop", [3]),
        ("echo", "yes"),
    ],
)
def test_invalid_values_raise_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        GenerationConfig(**{field: value})


def test_temperature_above_one_is_allowed_unlike_executorch():
    assert GenerationConfig(temperature=1.5).temperature == 1.5


def test_replace_validates_and_rejects_unknown_fields():
    config = GenerationConfig().replace(max_new_tokens=4, stop="END")
    assert config.max_new_tokens == 4 and config.stop == ("END",)
    with pytest.raises(ConfigError, match="max_tokens"):
        GenerationConfig().replace(max_tokens=4)
    with pytest.raises(ConfigError, match="top_p"):
        GenerationConfig().replace(top_p=2)


# --- settings models and the JSON Schema: one source of truth -------------------------------------

import re  # noqa: E402
import tomllib  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jsonschema  # noqa: E402

from mmcore.assemble import config_schema, load_config  # noqa: E402
from mmcore.plugins import PluginManager  # noqa: E402
from mmcore.settings.tables import GenerationTable, generation_fields_match  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def all_plugins() -> PluginManager:
    import mmcore_adapters
    import mmcore_audio
    import mmcore_image
    import mmcore_text

    pm = PluginManager(entry_points=False)
    for name, module in (("text", mmcore_text), ("image", mmcore_image), ("audio", mmcore_audio)):
        pm.register(module, name=name)
    pm.register(mmcore_adapters, name="adapters")
    return pm


def doc_configs() -> list[tuple[str, dict[str, Any]]]:
    """Every TOML block in docs/ that is a runner config (it has a `program` key)."""
    found = []
    for page in sorted(DOCS.glob("*.md")):
        for i, block in enumerate(re.findall(r"```toml\n(.*?)```", page.read_text(), flags=re.S)):
            data = tomllib.loads(block)
            if "program" in data:
                found.append((f"{page.name}#{i}", data))
    return found


def test_the_generation_table_mirrors_generation_config():
    assert generation_fields_match(GenerationConfig) == []


def test_the_schema_is_a_valid_json_schema(all_plugins):
    jsonschema.Draft202012Validator.check_schema(config_schema(all_plugins))


def test_docs_hold_config_examples():
    names = [name for name, _ in doc_configs()]
    assert len(names) >= 3 and any(n.startswith("config.md") for n in names)


@pytest.mark.parametrize(("page", "data"), doc_configs(), ids=[name for name, _ in doc_configs()])
def test_every_docs_example_config_passes_the_schema_and_load_config(page, data, all_plugins):
    jsonschema.validate(data, config_schema(all_plugins))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the docs use current names only
        load_config(data, plugin_manager=all_plugins)


P = {"program": "m.pte"}

#: (config, the TOML path both the schema and mmcore's ConfigError name)
BAD_CONFIGS: list[tuple[dict[str, Any], str]] = [
    ({**P, "image": {"max_pixels": "big"}}, "image.max_pixels"),
    ({**P, "image": {"max_pixels": 0}}, "image.max_pixels"),
    ({**P, "image": {"rescale_factor": "x"}}, "image.rescale_factor"),
    ({**P, "image": {"rescale_factor": -1.0}}, "image.rescale_factor"),
    ({**P, "image": {"do_rescale": "false"}}, "image.do_rescale"),
    ({**P, "image": {"size": {"shortest": 224}}}, "image.size"),
    ({**P, "image": {"size": [224]}}, "image.size"),
    ({**P, "image": {"crop_size": {"height": 0, "width": 224}}}, "image.crop_size"),
    ({**P, "image": {"resample": "cubic"}}, "image.resample"),
    ({**P, "image": {"resample": 9}}, "image.resample"),
    ({**P, "image": {"image_std": [0.5, 0.0, 0.5]}}, "image.image_std"),
    ({**P, "image": {"fill": [0, 0, 300]}}, "image.fill"),
    ({**P, "image": {"resize_mode": "zoom"}}, "image.resize_mode"),
    ({**P, "image": {"do_resize": False}}, "image.do_resize"),
    ({**P, "image": {"do_pan_and_scan": True}}, "image.do_pan_and_scan"),
    ({**P, "image": {"do_image_splitting": True}}, "image.do_image_splitting"),
    ({**P, "image": {"image_seq_length": "256"}}, "image.image_seq_length"),
    ({**P, "image": {"resampel": "nearest"}}, "image.resampel"),
    ({**P, "audio": {"sampling_rate": "16k"}}, "audio.sampling_rate"),
    ({**P, "audio": {"sampling_rate": 0}}, "audio.sampling_rate"),
    ({**P, "audio": {"truncate": "yes"}}, "audio.truncate"),
    ({**P, "audio": {"padding": "longest"}}, "audio.padding"),
    ({**P, "audio": {"resample_quality": "best"}}, "audio.resample_quality"),
    ({**P, "audio": {"chunk_length": 0}}, "audio.chunk_length"),
    ({**P, "generation": {"temperature": -1}}, "generation.temperature"),
    ({**P, "generation": {"temperature": "hot"}}, "generation.temperature"),
    ({**P, "generation": {"top_p": 0}}, "generation.top_p"),
    ({**P, "generation": {"top_p": 1.5}}, "generation.top_p"),
    ({**P, "generation": {"max_new_tokens": 0}}, "generation.max_new_tokens"),
    ({**P, "generation": {"max_new_tokens": -2}}, "generation.max_new_tokens"),
    ({**P, "generation": {"max_new_tokens": 1.5}}, "generation.max_new_tokens"),
    ({**P, "generation": {"seed": -1}}, "generation.seed"),
    ({**P, "generation": {"echo": "yes"}}, "generation.echo"),
    ({**P, "generation": {"stop": [""]}}, "generation.stop.0"),
    ({**P, "generation": {"repetition_penalty": 0}}, "generation.repetition_penalty"),
    ({**P, "generation": {"temprature": 0}}, "generation.temprature"),
    ({**P, "generation": {"speculative": "fast"}}, "generation.speculative"),
    ({**P, "generation": {"speculative": {"num_draft_tokens": 0}}}, "generation.speculative.num_draft_tokens"),
    ({**P, "plugins": {"allow": "text"}}, "plugins.allow"),
    ({**P, "plugins": {"alow": []}}, "plugins.alow"),
    ({**P, "serve": {"port": 70000}}, "serve.port"),
    ({**P, "serve": {"port": "8000"}}, "serve.port"),
    ({**P, "serve": {"parallel": 0}}, "serve.parallel"),
    ({**P, "serve": {"max_body_mb": 0}}, "serve.max_body_mb"),
    ({**P, "serve": {"prefix_cache": "no"}}, "serve.prefix_cache"),
    ({**P, "serve": {"tool_parser": "xml"}}, "serve.tool_parser"),
    ({**P, "serve": {"hots": "0.0.0.0"}}, "serve.hots"),
    ({**P, "progam": "x"}, "progam"),
    ({"program": ""}, "program"),
]


def _schema_paths(error: jsonschema.ValidationError) -> set[str]:
    """The TOML paths a schema error names: its location, plus each unexpected key under it."""
    base = ".".join(str(p) for p in error.absolute_path)
    paths = {base}
    if error.validator == "additionalProperties":
        for key in re.findall(r"'([^']+)' (?:was|were) unexpected", error.message) or re.findall(
            r"'([^']+)'", error.message
        ):
            paths.add(f"{base}.{key}" if base else key)
    for sub in error.context or ():
        paths |= _schema_paths(sub)
    return paths


@pytest.mark.parametrize(("config", "field"), BAD_CONFIGS, ids=[field for _, field in BAD_CONFIGS])
def test_every_bad_config_fails_schema_and_load_config_naming_the_same_field(config, field, all_plugins):
    errors = list(jsonschema.Draft202012Validator(config_schema(all_plugins)).iter_errors(config))
    assert errors, f"the schema accepts {config}"
    named = set().union(*(_schema_paths(e) for e in errors))
    assert field in named, f"schema errors name {named}, not {field}"
    with pytest.raises(ConfigError) as caught:
        load_config(config, plugin_manager=all_plugins)
    assert re.search(rf"(^|[\s'\[]){re.escape(field)}([\s:;.']|$)", str(caught.value)), str(caught.value)


def test_typed_errors_for_the_reported_holes(all_plugins):
    with pytest.raises(ConfigError, match=r"image\.max_pixels: Input should be a valid integer, got 'big'"):
        load_config({**P, "image": {"max_pixels": "big"}}, plugin_manager=all_plugins)
    with pytest.raises(ConfigError, match=r"image\.do_rescale: Input should be a valid boolean, got 'false'"):
        load_config({**P, "image": {"do_rescale": "false"}}, plugin_manager=all_plugins)


def test_image_table_takes_a_preprocessor_config_as_is(all_plugins):
    clip = {  # openai/clip-vit-base-patch32 preprocessor_config.json
        "crop_size": {"height": 224, "width": 224},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "CLIPImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": 224},
    }
    config = {**P, "image": clip}
    jsonschema.validate(config, config_schema(all_plugins))
    assert load_config(config, plugin_manager=all_plugins).modalities["image"] == clip


def test_image_table_takes_gemma3_and_smolvlm_preprocessor_configs_with_their_nulls(all_plugins):
    gemma3 = {  # google/gemma-3-4b-it preprocessor_config.json (JSON nulls included)
        "do_convert_rgb": None,
        "do_normalize": True,
        "do_pan_and_scan": None,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "Gemma3ImageProcessor",
        "image_seq_length": 256,
        "image_std": [0.5, 0.5, 0.5],
        "pan_and_scan_max_num_crops": None,
        "pan_and_scan_min_crop_size": None,
        "pan_and_scan_min_ratio_to_activate": None,
        "processor_class": "Gemma3Processor",
        "resample": 2,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": 896, "width": 896},
    }
    smolvlm = {  # HuggingFaceTB/SmolVLM-256M-Instruct, splitting off
        "do_convert_rgb": True,
        "do_image_splitting": False,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "Idefics3ImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "max_image_size": {"longest_edge": 512},
        "processor_class": "Idefics3Processor",
        "resample": 1,
        "rescale_factor": 0.00392156862745098,
        "size": {"longest_edge": 2048},
    }
    for table in (gemma3, smolvlm):
        config = {**P, "image": table}
        jsonschema.validate(config, config_schema(all_plugins))
        assert load_config(config, plugin_manager=all_plugins).modalities["image"] == table


def test_audio_sample_rate_is_accepted_with_a_deprecation_warning(all_plugins):
    config = {**P, "audio": {"sample_rate": 16000}}
    jsonschema.validate(config, config_schema(all_plugins))
    with pytest.warns(DeprecationWarning, match="sampling_rate"):
        load_config(config, plugin_manager=all_plugins)


def test_toml_files_are_read_in_binary(tmp_path, all_plugins):
    path = tmp_path / "mmcore.toml"
    path.write_bytes('program = "m.pte"\n[generation]\nstop = ["\u00bfQu\u00e9?"]\n'.encode())
    assert load_config(path, plugin_manager=all_plugins).generation.stop == ("\u00bfQu\u00e9?",)
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, plugin_manager=all_plugins)


def test_serve_table_is_validated_at_load_and_read_by_serve(tmp_path, all_plugins):
    from mmcore.serve.config import serve_table

    path = tmp_path / "mmcore.toml"
    path.write_text('program = "m.pte"\n[serve]\nport = 0\nmedia_dir = "media"\nparallel = 2\n')
    config = load_config(path, plugin_manager=all_plugins)
    assert config.serve is not None and (config.serve.port, config.serve.parallel) == (0, 2)
    assert config.serve.media_dir == tmp_path / "media"
    assert serve_table(path) == config.serve
    assert serve_table(path).replace(port=9000, host=None).port == 9000
    with pytest.raises(ConfigError, match=r"serve\.port"):
        serve_table(path).replace(port=-5)


def test_a_plugin_settings_model_rejects_a_bad_table_at_load_time(plugin_manager):
    from mmcore import hookimpl
    from mmcore.settings import Settings

    class Greeting(Settings):
        words: int = Field(3, ge=1)

    class Plugin:
        @hookimpl
        def mmcore_register_settings(self, registry):
            registry.add("greeting", Greeting)

    plugin_manager.register(Plugin(), name="greeting")
    config = load_config({**P, "greeting": {"words": 5}}, plugin_manager=plugin_manager)
    assert config.plugin_settings["greeting"] == Greeting(words=5)
    with pytest.raises(ConfigError, match=r"greeting\.words: .*greater than or equal to 1, got 0"):
        load_config({**P, "greeting": {"words": 0}}, plugin_manager=plugin_manager)
    schema = config_schema(plugin_manager)["properties"]["greeting"]
    assert schema["properties"]["words"]["minimum"] == 1 and schema["additionalProperties"] is False


def test_two_plugins_registering_one_table_are_reported(plugin_manager):
    from mmcore import hookimpl
    from mmcore.settings import Settings

    class Table(Settings):
        x: int = 0

    def plugin():
        class Plugin:
            @hookimpl
            def mmcore_register_settings(self, registry):
                registry.add("shared", Table)

        return Plugin()

    plugin_manager.register(plugin(), name="one")
    plugin_manager.register(plugin(), name="two")
    assert list(plugin_manager.settings_models()) == ["shared"]
    assert [f.name for f in plugin_manager.failures] == ["one"]
    assert "'two' already registered" in plugin_manager.failures[0].error


SCALAR_FIELDS = [
    "echo", "max_new_tokens", "seq_len", "temperature", "top_k", "top_p", "seed", "num_bos", "num_eos",
    "ignore_eos", "warming", "repetition_penalty", "frequency_penalty", "presence_penalty", "logprobs",
    "top_logprobs",
]  # fmt: skip
PROBES = [-(2**63), -2, -1, 0, 0.5, 1, 1.5, 2, 2**63, "x", True, False, None, float("nan"), float("inf")]


@pytest.mark.parametrize("field", SCALAR_FIELDS)
def test_generation_config_and_its_table_model_accept_the_same_values(field):
    """The Python API (`GenerationConfig`) and the config table (`GenerationTable`) agree on every
    probe value, so the schema printed for `[generation]` is the rule `GenerationConfig` applies."""
    disagreements = []
    for value in PROBES:
        try:
            GenerationConfig(**{field: value})
            api_ok = True
        except ConfigError:
            api_ok = False
        try:
            GenerationTable.model_validate({field: value})
            table_ok = True
        except ValidationError:
            table_ok = False
        if api_ok != table_ok:
            disagreements.append((value, api_ok, table_ok))
    assert not disagreements, f"{field}: (value, GenerationConfig accepts, GenerationTable accepts) {disagreements}"


@pytest.mark.parametrize("field", ["method", "num_draft_tokens", "max_ngram", "min_ngram", "adaptive", "draft_model"])
def test_speculative_config_and_its_table_model_accept_the_same_values(field):
    from mmcore.settings.tables import SpeculativeTable
    from mmcore.speculative.settings import SpeculativeConfig

    disagreements = []
    for value in [*PROBES, "ngram", "draft", "off", "d.pte", ""]:
        base = {"max_ngram": 2**62} if field == "min_ngram" else {}
        try:
            SpeculativeConfig(**{**base, field: value})
            api_ok = True
        except ConfigError:
            api_ok = False
        try:
            SpeculativeTable.model_validate({**base, field: value})
            table_ok = True
        except ValidationError:
            table_ok = False
        if api_ok != table_ok:
            disagreements.append((value, api_ok, table_ok))
    assert not disagreements, f"{field}: (value, SpeculativeConfig accepts, SpeculativeTable accepts) {disagreements}"
