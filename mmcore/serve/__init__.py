"""`mmcore serve`: an OpenAI-compatible HTTP server for multimodal `.pte` programs.

`ChatService` (chat.py) turns OpenAI request bodies into response bodies in-process; `create_app`
(app.py) puts HTTP routes around it; `slots.py` runs requests on parallel runners with prefix
caching; `protocol.py` holds the pydantic models of the protocol; `tools.py` parses tool calls;
`metrics.py` exposes Prometheus metrics; `config.py` reads the ``[serve]`` settings; `cli.py` is
the command. Its dependencies come with the ``serve`` extra (``pip install 'mmcore[serve]'``);
they are imported only when these names are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmcore._lazy import lazy_getattr

if TYPE_CHECKING:
    from mmcore.serve.app import create_app
    from mmcore.serve.chat import ChatService
    from mmcore.serve.config import ServeSettings
    from mmcore.serve.errors import APIError

__all__ = ["APIError", "ChatService", "ServeSettings", "create_app"]

_HOMES = {
    "APIError": "mmcore.serve.errors",
    "ChatService": "mmcore.serve.chat",
    "ServeSettings": "mmcore.serve.config",
    "create_app": "mmcore.serve.app",
}


__getattr__ = lazy_getattr("mmcore.serve", _HOMES)
