"""graftlm's plug-in system (pluggy): backbone adapters are plugins found through entry points."""

from graftlm.plugins.adapter import BackboneAdapter, is_grafted, mark_grafted
from graftlm.plugins.hookspecs import hookimpl, hookspec
from graftlm.plugins.manager import (
    AdapterEntry,
    find_adapter,
    get_plugin_manager,
    list_adapters,
    register,
    reset_adapter_cache,
    unregister,
)
from graftlm.plugins.selftest import SelfTestError

__all__ = [
    "AdapterEntry",
    "BackboneAdapter",
    "find_adapter",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
    "is_grafted",
    "list_adapters",
    "mark_grafted",
    "SelfTestError",
    "register",
    "reset_adapter_cache",
    "unregister",
]
