"""Documentation stays in step with the code."""

from __future__ import annotations

import inspect
from pathlib import Path

from mmcore import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_hook_is_documented():
    text = (DOCS / "plugin-hooks.md").read_text()
    hooks = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("mmcore_")]
    assert hooks
    missing = [h for h in hooks if f"## {h}" not in text]
    assert not missing, f"hooks without a section in docs/plugin-hooks.md: {missing}"
