"""The plugin manager: loads every ``graftlm`` entry point and finds the adapter for a model."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pluggy
from torch import nn

from graftlm.plugins import hookspecs
from graftlm.plugins.adapter import BackboneAdapter

DOCS_HINT = "docs/adapters.md in the graftlm repository"

_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None
_adapters: list[AdapterEntry] | None = None


@dataclass(frozen=True)
class AdapterEntry:
    """One registered adapter and where it came from."""

    adapter: BackboneAdapter
    plugin: str  # plugin name (the entry point's name, or the registered object's name)
    source: str  # "dist-name version (module)" for entry points, the module otherwise


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager, with all ``graftlm`` entry points loaded (built-ins included)."""
    global _manager
    with _lock:
        if _manager is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
            pm.add_hookspecs(hookspecs)
            pm.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
            _manager = pm
        return _manager


def register(plugin: Any, name: str | None = None) -> None:
    """Register a plugin object or module by hand (tests, notebooks); entry points need no call."""
    get_plugin_manager().register(plugin, name=name)
    reset_adapter_cache()


def unregister(plugin: Any) -> None:
    get_plugin_manager().unregister(plugin)
    reset_adapter_cache()


def reset_adapter_cache(reload_entry_points: bool = False) -> None:
    """Forget the collected adapters (and, if asked, the manager, so entry points load again)."""
    global _adapters, _manager
    with _lock:
        _adapters = None
        if reload_entry_points:
            _manager = None


def _as_adapter(item: Any, plugin_name: str) -> BackboneAdapter:
    adapter = item() if isinstance(item, type) else item
    if not isinstance(adapter, BackboneAdapter):
        raise TypeError(
            f"plugin {plugin_name!r} returned {item!r} from graftlm_adapters(); expected a "
            f"graftlm.plugins.BackboneAdapter subclass or instance (see {DOCS_HINT})"
        )
    return adapter


def list_adapters() -> list[AdapterEntry]:
    """All registered adapters with their source, in registration order."""
    global _adapters
    pm = get_plugin_manager()
    with _lock:
        if _adapters is not None:
            return list(_adapters)
        dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
        entries: list[AdapterEntry] = []
        for impl in pm.hook.graftlm_adapters.get_hookimpls():  # registration order
            module = getattr(impl.plugin, "__name__", type(impl.plugin).__module__)
            dist = dists.get(id(impl.plugin))
            if dist is not None:
                source = f"{dist.project_name} {dist.version} (entry point {impl.plugin_name!r}: {module})"
            else:
                source = f"registered in code: {module}"
            for item in impl.function() or []:
                adapter = _as_adapter(item, impl.plugin_name)
                adapter._graftlm_source = source  # type: ignore[attr-defined]
                entries.append(AdapterEntry(adapter, impl.plugin_name, source))
        _adapters = entries
        return list(entries)


def describe_model(model: Any) -> str:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    return f"{type(model).__name__} (config.model_type={model_type!r})"


def find_adapter(model: nn.Module) -> BackboneAdapter:
    """The adapter for ``model``: a plugin's ``graftlm_select_adapter`` answer, else the first
    adapter whose ``matches(model)`` is true — third-party adapters before graftlm's built-in ones,
    fallback adapters (the generic one) after every specific one.

    Raises ValueError naming the model, the registered adapters and the three ways in when none
    can graft ``model``.
    """
    entries = list_adapters()
    adapters = [e.adapter for e in entries]
    chosen = get_plugin_manager().hook.graftlm_select_adapter(model=model, adapters=adapters)
    if chosen is not None:
        return _as_adapter(chosen, "graftlm_select_adapter")
    builtin = f"{hookspecs.PROJECT_NAME} "
    ordered = sorted(entries, key=lambda e: (bool(getattr(e.adapter, "fallback", False)), e.source.startswith(builtin)))
    for entry in ordered:
        if entry.adapter.matches(model):
            return entry.adapter
    raise ValueError(refusal(model, entries))


def refusal(model: Any, entries: list[AdapterEntry]) -> str:
    """Why no registered adapter takes ``model``, and the three ways to graft it anyway."""
    known = ", ".join(f"{e.adapter.name or type(e.adapter).__name__} {list(e.adapter.model_types) or '(any)'}"
                      for e in entries)
    reasons = [f"{e.adapter.name}: {e.adapter.why_not(model)}" for e in entries if hasattr(e.adapter, "why_not")]
    return (
        f"no graftlm adapter can graft {describe_model(model)}. Registered adapters: {known or 'none'}"
        + (f" ({'; '.join(reasons)})" if reasons else "")
        + ". Three ways in: (1) the generic adapter takes any transformers causal LM whose base model "
        "(model.base_model) reads inputs_embeds and whose get_input_embeddings() returns the token "
        "embedding; (2) pass an adapter explicitly: graft(model, vae, adapter=MyAdapter()), where MyAdapter "
        "subclasses graftlm.plugins.BackboneAdapter and implements strip(model); (3) register that adapter "
        "for everyone under the 'graftlm' entry-point group of your package "
        f"([project.entry-points.graftlm] in pyproject.toml). A complete example: {DOCS_HINT}."
    )
