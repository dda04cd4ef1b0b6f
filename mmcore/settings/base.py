"""The base of every settings model (imports pydantic; `mmcore.settings` re-exports it lazily)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Settings"]


class Settings(BaseModel):
    """Base of mmcore's settings models: strict types, unknown keys rejected, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
