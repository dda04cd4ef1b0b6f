"""Plugin discovery and registration: the one façade over pluggy.

Plugins are modules (or objects) with `mmcore.hookimpl` functions, found through the `mmcore`
entry-point group. Environment switches:

- ``MMCORE_PLUGINS``: comma-separated allow-list of plugin names (entry-point or distribution
  names); when set, only these entry-point plugins load (``MMCORE_PLUGINS=""`` loads none).
- ``MMCORE_BLOCK_PLUGINS``: comma-separated names never loaded.
- ``MMCORE_TRACE_PLUGINS=1``: log every hook call at DEBUG level.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import TYPE_CHECKING, Any

import pluggy

from mmcore import hookspecs
from mmcore.errors import PluginError
from mmcore.registry import ModalityRegistrar, ModalityRegistry, TokenizerRegistrar
from mmcore.tokenizer import TokenizerLoader

if TYPE_CHECKING:
    from mmcore.adapters import AdapterRegistry

__all__ = ["PluginManager", "PluginInfo", "PluginFailure", "get_plugin_manager", "ENTRY_POINT_GROUP"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mmcore"
_ALLOW_ENV = "MMCORE_PLUGINS"
_BLOCK_ENV = "MMCORE_BLOCK_PLUGINS"
_TRACE_ENV = "MMCORE_TRACE_PLUGINS"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that failed to import or to register; the others still load."""

    name: str
    stage: str
    error: str


@dataclass
class PluginInfo:
    """What `mmcore plugins` shows about one plugin."""

    name: str
    version: str | None
    distribution: str | None
    hooks: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    input_types: list[str] = field(default_factory=list)
    tokenizer_loaders: list[str] = field(default_factory=list)
    adapters: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Origin:
    distribution: str | None
    version: str | None
    entry_point: str | None


class PluginManager:
    """Finds plugins, runs their register hooks once, and hands out the resulting registries."""

    def __init__(
        self,
        *,
        entry_points: bool = True,
        allow: Iterable[str] | None = None,
        block: Iterable[str] | None = None,
    ) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._allow = _names(allow) if allow is not None else _env_names(_ALLOW_ENV)
        self._block = _names(block) if block is not None else (_env_names(_BLOCK_ENV) or set())
        self._origins: dict[str, _Origin] = {}
        self.failures: list[PluginFailure] = []
        self._lock = threading.RLock()
        self._modalities: ModalityRegistry | None = None
        self._loaders: list[TokenizerLoader] | None = None
        self._loader_plugins: dict[int, str] = {}
        self._adapters: AdapterRegistry | None = None
        if os.environ.get(_TRACE_ENV):
            self._pm.trace.root.setwriter(logger.debug)
            self._pm.enable_tracing()
        if entry_points:
            self._load_entry_points()

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin module or object (tests, built-ins, embedding applications)."""
        with self._lock:
            plugin_name = name or _default_name(plugin)
            try:
                registered = self._pm.register(plugin, name=plugin_name)
                self._pm.check_pending()
            except (ValueError, pluggy.PluginValidationError) as exc:
                if self._pm.is_registered(plugin):
                    self._pm.unregister(plugin)
                raise PluginError(f"plugin '{plugin_name}' cannot be registered: {exc}") from exc
            self._origins.setdefault(plugin_name, _Origin(None, None, None))
            self._modalities = None
            self._loaders = None
            self._adapters = None
            return registered or plugin_name

    def plugin_names(self) -> list[str]:
        return [name for name, _ in self._pm.list_name_plugin()]

    def modality_registry(self) -> ModalityRegistry:
        """Input type -> handler, built once from every plugin's `mmcore_register_modalities`."""
        with self._lock:
            if self._modalities is None:
                registry = ModalityRegistry()
                self._call_register_hook(
                    "mmcore_register_modalities",
                    lambda plugin: {"registry": ModalityRegistrar(registry, plugin)},
                )
                self._modalities = registry
            return self._modalities

    def tokenizer_loaders(self) -> list[TokenizerLoader]:
        """Tokenizer loaders in the order they are tried."""
        with self._lock:
            if self._loaders is None:
                primary: list[TokenizerLoader] = []
                fallbacks: list[TokenizerLoader] = []

                self._call_register_hook(
                    "mmcore_register_tokenizers",
                    lambda plugin: {"registry": TokenizerRegistrar(primary, fallbacks, plugin)},
                    loaders=(primary, fallbacks),
                )
                self._loaders = primary + fallbacks
            return list(self._loaders)

    def adapter_registry(self) -> AdapterRegistry:
        """Adapter name -> model adapter, built once from every plugin's `mmcore_register_adapters`."""
        from mmcore.adapters import AdapterRegistrar, AdapterRegistry

        with self._lock:
            if self._adapters is None:
                registry = AdapterRegistry()
                self._call_register_hook(
                    "mmcore_register_adapters",
                    lambda plugin: {"registry": AdapterRegistrar(registry, plugin)},
                )
                self._adapters = registry
            return self._adapters

    def plugin_infos(self) -> list[PluginInfo]:
        """One entry per registered plugin: name, version, hooks, modalities, input types."""
        modalities = self.modality_registry()
        self.tokenizer_loaders()
        adapters = self.adapter_registry()
        infos: list[PluginInfo] = []
        for name, plugin in self._pm.list_name_plugin():
            origin = self._origins.get(name, _Origin(None, None, None))
            info = PluginInfo(name=name, version=origin.version, distribution=origin.distribution)
            info.hooks = sorted(h.name for h in self._pm.get_hookcallers(plugin) or [])
            for handler in modalities.handlers:
                if modalities.plugin_of(handler.name) == name:
                    info.modalities.append(handler.name)
                    info.input_types.extend(t.__qualname__ for t in handler.input_types)
            info.tokenizer_loaders = [
                loader.name for loader in self._loaders or [] if self._loader_plugins.get(id(loader)) == name
            ]
            info.adapters = [n for n in adapters.names() if adapters.plugin_of(n) == name]
            infos.append(info)
        return infos

    def _call_register_hook(
        self,
        hook_name: str,
        make_kwargs: Callable[[str], dict[str, Any]],
        loaders: tuple[list[TokenizerLoader], list[TokenizerLoader]] | None = None,
    ) -> None:
        """Call each plugin's implementation on its own, so one failing plugin spares the others."""
        hook = getattr(self._pm.hook, hook_name)
        # get_hookimpls() lists implementations in registration order (trylast ones first).
        for impl in hook.get_hookimpls():
            kwargs = make_kwargs(impl.plugin_name)
            seen = {id(x) for group in loaders for x in group} if loaders else set()
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception as exc:  # noqa: BLE001 - isolate plugin faults
                message = f"{type(exc).__name__}: {exc}"
                logger.warning("plugin '%s' failed in %s: %s", impl.plugin_name, hook_name, message)
                self.failures.append(PluginFailure(impl.plugin_name, hook_name, message))
                continue
            if loaders:
                for group in loaders:
                    for loader in group:
                        if id(loader) not in seen:
                            self._loader_plugins[id(loader)] = impl.plugin_name

    def _load_entry_points(self) -> None:
        for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else None
            names = {ep.name, dist} - {None}
            if names & self._block or (self._allow is not None and not names & self._allow):
                logger.debug("plugin '%s' skipped by %s/%s", ep.name, _ALLOW_ENV, _BLOCK_ENV)
                continue
            if self._pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                self.register(plugin, name=ep.name)
            except Exception as exc:  # noqa: BLE001 - isolate plugin faults
                message = f"{type(exc).__name__}: {exc}"
                logger.warning("plugin '%s' failed to load: %s", ep.name, message)
                self.failures.append(PluginFailure(ep.name, "load", message))
                continue
            version = ep.dist.version if ep.dist is not None else None
            self._origins[ep.name] = _Origin(dist, version, ep.value)


_default_manager: PluginManager | None = None
_default_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, built on first use from the installed entry points."""
    global _default_manager
    with _default_lock:
        if _default_manager is None:
            _default_manager = PluginManager()
        return _default_manager


def _default_name(plugin: object) -> str:
    return str(getattr(plugin, "__name__", None) or type(plugin).__name__)


def _names(values: Iterable[str]) -> set[str]:
    return {v.strip() for v in values if v.strip()}


def _env_names(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    return None if value is None else _names(value.split(","))
