"""Plugin discovery and registration: the one façade over pluggy.

Plugins are modules (or objects) with `mmcore.hookimpl` functions, found through the `mmcore`
entry-point group. Environment switches:

- ``MMCORE_PLUGINS``: comma-separated allow-list of plugin names (entry-point or distribution
  names); when set, only these entry-point plugins load (``MMCORE_PLUGINS=""`` loads none).
- ``MMCORE_BLOCK_PLUGINS``: comma-separated names never loaded.
- ``MMCORE_TRACE_PLUGINS=1``: log every hook call (pluggy's tracing) at DEBUG level.

Every hook is called through pluggy (`pm.hook.<name>(...)`), so implementation order,
``tryfirst``/``trylast``, ``wrapper=True`` and ``historic`` hooks behave as pluggy documents. A
plugin whose implementation raises is recorded in `PluginManager.failures` and the hook is called
again without it (`subset_hook_caller`), so the other plugins still register.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from types import CodeType, FrameType, TracebackType
from typing import TYPE_CHECKING, TypeVar

import pluggy

from mmcore import hookspecs
from mmcore.errors import PluginError
from mmcore.registry import ModalityRegistrar, ModalityRegistry, TokenizerRegistrar
from mmcore.tokenizer import TokenizerLoader

if TYPE_CHECKING:
    from pydantic import BaseModel

    from mmcore.adapters import AdapterRegistry

__all__ = ["PluginManager", "PluginInfo", "PluginFailure", "get_plugin_manager", "ENTRY_POINT_GROUP"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mmcore"
_ALLOW_ENV = "MMCORE_PLUGINS"
_BLOCK_ENV = "MMCORE_BLOCK_PLUGINS"
_TRACE_ENV = "MMCORE_TRACE_PLUGINS"
_UNKNOWN = "<unknown plugin>"

T = TypeVar("T")


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
    """Finds plugins, calls their register hooks once through pluggy, hands out the resulting registries."""

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
        for name in self._block:
            self._pm.set_blocked(name)
        self._origins: dict[str, _Origin] = {}
        self.failures: list[PluginFailure] = []
        self._lock = threading.RLock()
        self._modalities: ModalityRegistry | None = None
        self._loaders: list[TokenizerLoader] | None = None
        self._loader_plugins: dict[int, str] = {}
        self._adapters: AdapterRegistry | None = None
        self._settings: dict[str, type[BaseModel]] | None = None
        self._settings_plugins: dict[str, str] = {}
        if os.environ.get(_TRACE_ENV, "") not in ("", "0"):
            self._pm.trace.root.setwriter(lambda message: logger.debug("%s", message.rstrip("\n")))
            self._pm.enable_tracing()
        # Historic: every plugin registered from now on gets the call on registration.
        self._pm.hook.mmcore_addhooks.call_historic(kwargs={"pluginmanager": self})
        if entry_points:
            self._load_entry_points()

    @property
    def hook(self) -> pluggy.HookRelay:
        """pluggy's hook relay: `pm.hook.<name>(**kwargs)` calls every plugin's implementation."""
        return self._pm.hook

    @property
    def pluggy_manager(self) -> pluggy.PluginManager:
        """The underlying `pluggy.PluginManager` (for what this façade does not wrap)."""
        return self._pm

    def add_hookspecs(self, module_or_class: types.ModuleType | type) -> None:
        """Add hook specifications (a module or class of `mmcore.hookspec` functions), e.g. from
        a plugin's `mmcore_addhooks`."""
        self._pm.add_hookspecs(module_or_class)

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register a plugin module or object (tests, built-ins, embedding applications).

        Returns the plugin's name, or None when the name is blocked (`block`, ``MMCORE_BLOCK_PLUGINS``).
        """
        with self._lock:
            plugin_name = name or _default_name(plugin)
            try:
                registered = self._pm.register(plugin, name=plugin_name)
                self._pm.check_pending()
            except Exception as exc:
                if self._pm.is_registered(plugin):
                    self._pm.unregister(plugin)
                raise PluginError(f"plugin '{plugin_name}' cannot be registered: {exc}") from exc
            if registered is None:
                logger.debug("plugin '%s' is blocked", plugin_name)
                return None
            self._origins.setdefault(plugin_name, _Origin(None, None, None))
            self._invalidate()
            return registered

    def block(self, name: str) -> None:
        """Block a plugin name: unregister it if registered, and never register it again."""
        with self._lock:
            self._block.add(name)
            self._pm.set_blocked(name)
            self._invalidate()

    def is_blocked(self, name: str) -> bool:
        return self._pm.is_blocked(name)

    def plugin_names(self) -> list[str]:
        return [name for name, plugin in self._pm.list_name_plugin() if plugin is not None]

    def modality_registry(self) -> ModalityRegistry:
        """Input type -> handler, built once from every plugin's `mmcore_register_modalities`."""

        def build(call: pluggy.HookCaller, plugin: Callable[[], str]) -> ModalityRegistry:
            registry = ModalityRegistry()
            call(registry=ModalityRegistrar(registry, plugin))
            return registry

        with self._lock:
            if self._modalities is None:
                self._modalities = self._call_register_hook("mmcore_register_modalities", build)
            return self._modalities

    def tokenizer_loaders(self) -> list[TokenizerLoader]:
        """Tokenizer loaders in the order they are tried."""

        def build(call: pluggy.HookCaller, plugin: Callable[[], str]) -> list[TokenizerLoader]:
            primary: list[TokenizerLoader] = []
            fallbacks: list[TokenizerLoader] = []
            self._loader_plugins = {}
            call(registry=TokenizerRegistrar(primary, fallbacks, plugin, self._loader_plugins))
            return primary + fallbacks

        with self._lock:
            if self._loaders is None:
                self._loaders = self._call_register_hook("mmcore_register_tokenizers", build)
            return list(self._loaders)

    def adapter_registry(self) -> AdapterRegistry:
        """Adapter name -> model adapter, built once from every plugin's `mmcore_register_adapters`."""
        from mmcore.adapters import AdapterRegistrar, AdapterRegistry

        def build(call: pluggy.HookCaller, plugin: Callable[[], str]) -> AdapterRegistry:
            registry = AdapterRegistry()
            call(registry=AdapterRegistrar(registry, plugin))
            return registry

        with self._lock:
            if self._adapters is None:
                self._adapters = self._call_register_hook("mmcore_register_adapters", build)
            return self._adapters

    def settings_models(self) -> dict[str, type[BaseModel]]:
        """Config table name -> the pydantic model plugins registered for it (`mmcore_register_settings`)."""
        from mmcore.settings import SettingsRegistrar

        def build(call: pluggy.HookCaller, plugin: Callable[[], str]) -> dict[str, type[BaseModel]]:
            models: dict[str, type[BaseModel]] = {}
            self._settings_plugins = {}
            call(registry=SettingsRegistrar(models, self._settings_plugins, plugin))
            return models

        with self._lock:
            if self._settings is None:
                self._settings = self._call_register_hook("mmcore_register_settings", build)
            return dict(self._settings)

    def plugin_infos(self) -> list[PluginInfo]:
        """One entry per registered plugin: name, version, hooks, modalities, input types."""
        modalities = self.modality_registry()
        self.tokenizer_loaders()
        adapters = self.adapter_registry()
        infos: list[PluginInfo] = []
        for name, plugin in self._pm.list_name_plugin():
            if plugin is None:  # blocked
                continue
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

    def _invalidate(self) -> None:
        self._modalities = None
        self._loaders = None
        self._adapters = None
        self._settings = None

    def _call_register_hook(self, hook_name: str, build: Callable[[pluggy.HookCaller, Callable[[], str]], T]) -> T:
        """`build(caller, current_plugin)` with the hook's pluggy caller; when an implementation
        raises, its plugin is recorded in `failures` and the hook is called again without it."""
        hook: pluggy.HookCaller = getattr(self._pm.hook, hook_name)
        owners = _Owners(hook.get_hookimpls())
        left_out: list[str] = []
        while True:
            plugins = [self._pm.get_plugin(n) for n in left_out]
            caller = self._pm.subset_hook_caller(hook_name, plugins) if left_out else hook
            try:
                return build(caller, owners.current)
            except Exception as exc:
                culprit = owners.culprit(exc.__traceback__)
                if culprit is None or culprit in left_out:
                    raise PluginError(f"{hook_name} failed outside any plugin's implementation: {exc}") from exc
                message = f"{type(exc).__name__}: {exc}"
                logger.warning("plugin '%s' failed in %s: %s", culprit, hook_name, message)
                self.failures.append(PluginFailure(culprit, hook_name, message))
                left_out.append(culprit)

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


class _Owners:
    """Which plugin's implementation a frame runs: for attributing registrations and failures.

    pluggy calls every implementation from one `_multicall`; the registrar asks, at `add` time,
    which implementation is on the stack. Implementations are told apart by code object, then
    (for methods and closures sharing one code object) by the bound instance or the closure cells.
    """

    def __init__(self, impls: Sequence[pluggy.HookImpl]) -> None:
        self._by_code: dict[CodeType, list[pluggy.HookImpl]] = {}
        for impl in impls:
            code = getattr(impl.function, "__code__", None)
            if isinstance(code, CodeType):
                self._by_code.setdefault(code, []).append(impl)

    def of_frame(self, frame: FrameType) -> str | None:
        impls = self._by_code.get(frame.f_code)
        if not impls:
            return None
        if len(impls) > 1:
            for impl in impls:
                if _runs(frame, impl.function):
                    return impl.plugin_name
        return impls[0].plugin_name

    def current(self) -> str:
        """The plugin whose implementation is running (innermost on the stack)."""
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            name = self.of_frame(frame)
            if name is not None:
                return name
            frame = frame.f_back
        return _UNKNOWN

    def culprit(self, tb: TracebackType | None) -> str | None:
        """The plugin of the innermost implementation in a traceback: the one that raised."""
        found = None
        while tb is not None:
            found = self.of_frame(tb.tb_frame) or found
            tb = tb.tb_next
        return found


def _runs(frame: FrameType, function: object) -> bool:
    bound = getattr(function, "__self__", None)
    func = getattr(function, "__func__", function)
    code = getattr(func, "__code__", None)
    if bound is not None and isinstance(code, CodeType) and code.co_varnames:
        return frame.f_locals.get(code.co_varnames[0]) is bound
    cells = getattr(func, "__closure__", None) or ()
    names = code.co_freevars if isinstance(code, CodeType) else ()
    local = frame.f_locals
    return bool(cells) and all(n in local and local[n] is c.cell_contents for n, c in zip(names, cells, strict=False))


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
