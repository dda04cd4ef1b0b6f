"""The server's settings: the ``[serve]`` table of the TOML config, overridden by command-line flags.

`ServeSettings` is a settings model of the same system as the other tables (`mmcore.settings`):
`load_config` validates ``[serve]`` with it and `mmcore config schema` prints its JSON Schema.
"""

from __future__ import annotations

import os

from mmcore.settings import read_toml
from mmcore.settings.tables import ServeSettings

__all__ = ["ServeSettings", "serve_table"]


def serve_table(path: str | os.PathLike[str] | None) -> ServeSettings:
    """The ``[serve]`` settings of a TOML config file (defaults when there is no file or table)."""
    if path is None:
        return ServeSettings()
    from pathlib import Path

    file = Path(path)
    return ServeSettings.from_table(read_toml(file).get("serve", {}), file.parent)
