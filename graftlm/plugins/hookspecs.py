"""The graftlm hook specifications (pluggy project name ``"graftlm"``).

A plugin is any module or object with functions marked ``@graftlm.hookimpl``; it is found through
the ``graftlm`` entry-point group (``[project.entry-points.graftlm]`` in its ``pyproject.toml``),
which is exactly how graftlm's own adapters (``graftlm_adapters.opt``, ``.llama``, ``.generic``)
register. See docs/adapters.md.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "graftlm"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def graftlm_adapters() -> list[Any]:
    """Return the backbone adapters this plugin provides.

    Each item is a `graftlm.plugins.BackboneAdapter` subclass (instantiated with no arguments) or
    an instance. Called once per plugin manager; results of all plugins are concatenated.
    """


@hookspec(firstresult=True)
def graftlm_select_adapter(model: Any, adapters: list[Any]) -> Any | None:
    """Pick the adapter for ``model`` among all registered ``adapters``, or return None.

    The first non-None answer wins (plugins registered later are asked first). Implement this only
    to override the default choice, which is the first adapter whose ``matches(model)`` is true.
    """
