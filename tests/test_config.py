"""GenerationConfig validation and ExecuTorch's resolve_max_new_tokens table."""

from __future__ import annotations

import pytest

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
