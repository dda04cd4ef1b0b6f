"""Documentation stays in step with the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from mmcore import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _hookspecs() -> dict[str, list[str]]:
    """Every hook in hookspecs.py -> its argument names."""
    return {
        name: list(inspect.signature(fn).parameters)
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("mmcore_") and hasattr(fn, "mmcore_spec")
    }


def _documented_hooks() -> dict[str, list[str]]:
    """Every `## mmcore_*` section of docs/plugin-hooks.md -> the names on its **Arguments:** line."""
    text = (DOCS / "plugin-hooks.md").read_text()
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    documented: dict[str, list[str]] = {}
    for section in sections:
        title = section.splitlines()[0].strip()
        if not title.startswith("mmcore_"):
            continue
        line = re.search(r"\*\*Arguments:\*\* ((?:`\w+`(?:, )?)+)", section)
        documented[title] = re.findall(r"`(\w+)`", line.group(1)) if line else []
    return documented


def test_plugin_hooks_page_lists_exactly_the_hooks_and_their_arguments():
    specs = _hookspecs()
    assert len(specs) >= 5
    assert _documented_hooks() == specs


def test_every_hook_spec_documents_each_argument():
    for name, args in _hookspecs().items():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        missing = [a for a in args if f":param {a}:" not in doc]
        assert not missing, f"{name}'s docstring lacks :param: for {missing}"


def _models():
    import mmcore_audio
    import mmcore_image

    from mmcore.settings.tables import GenerationTable, PluginsTable, ServeSettings, SpeculativeTable

    return [PluginsTable, GenerationTable, SpeculativeTable, ServeSettings, mmcore_image.ImageSettings,
            mmcore_audio.AudioTable]  # fmt: skip


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_config_page_names_every_key_of_every_settings_model(model):
    text = (DOCS / "config.md").read_text()
    missing = [name for name in model.model_fields if f"`{name}`" not in text]
    assert not missing, f"docs/config.md does not document {model.__name__} keys {missing}"


def _support_table(page: str) -> list[str]:
    """The rows of a page's per-family support table (the lines starting with `| ` after its title)."""
    text = (DOCS / page).read_text()
    section = re.split(r"^## (?:Support per family|What runs, per family)", text, flags=re.M)[1]
    section = re.split(r"^## ", section, flags=re.M)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def test_support_tables_agree_and_name_tests_that_exist():
    rows = _support_table("adapters.md")
    assert rows == _support_table("executorch-differences.md")
    assert len(rows) == 9  # header, rule, seven families
    named = {name for row in rows for name in re.findall(r"`([\w/]+\.py)`", row)}
    assert named, "the table names no tests"
    tests = Path(__file__).resolve().parent
    assert sorted(n for n in named if not (tests / n).is_file()) == []
