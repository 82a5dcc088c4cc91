"""The pluggy plug-in system: entry-point discovery (built-in and third-party), selection, CLI."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import graftlm
from graftlm import cli, plugins
from graftlm.plugins import BackboneAdapter, find_adapter, list_adapters

from fixtures.tiny_models import one_thread, tiny_gpt2, tiny_llama, tiny_opt, tiny_vae  # noqa: F401

TOY = Path(__file__).parent / "fixtures" / "graftlm_toy_adapter"


@pytest.fixture
def toy_distribution(tmp_path):
    """Install the toy adapter package as a distribution on sys.path: a module plus a
    ``*.dist-info`` with METADATA and entry_points.txt, exactly what pip would write."""
    shutil.copy(TOY / "graftlm_toy_adapter.py", tmp_path)
    info = tmp_path / "graftlm_toy_adapter-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: graftlm-toy-adapter\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[graftlm]\ngpt2_example = graftlm_toy_adapter\n")
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    plugins.reset_adapter_cache(reload_entry_points=True)
    yield
    sys.path.remove(str(tmp_path))
    sys.modules.pop("graftlm_toy_adapter", None)
    importlib.invalidate_caches()
    plugins.reset_adapter_cache(reload_entry_points=True)


def test_hookimpl_is_exported_from_the_package():
    assert graftlm.hookimpl is plugins.hookimpl


def test_builtin_adapters_come_from_entry_points():
    entries = {e.adapter.name: e for e in list_adapters()}
    assert {"opt", "llama", "generic"} <= set(entries)
    for name in ("opt", "llama", "generic"):
        assert entries[name].source.startswith("graftlm ")
        assert f"graftlm_adapters.{name}" in entries[name].source


def test_find_adapter_picks_by_model_type():
    assert find_adapter(tiny_opt()).name == "opt"
    assert find_adapter(tiny_llama()).name == "llama"


class _NoBaseModel(torch.nn.Module):
    """A causal-LM-like module with a config but no separate base model: nothing can graft it."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(model_type="toy-rnn")
        self.cell = torch.nn.GRU(8, 8)


def test_unknown_architecture_is_refused_with_the_three_ways_in():
    with pytest.raises(ValueError) as err:
        find_adapter(_NoBaseModel())
    message = str(err.value)
    assert "_NoBaseModel" in message and "'toy-rnn'" in message
    assert "opt" in message and "llama" in message and "generic" in message
    assert "adapter=MyAdapter()" in message and "[project.entry-points.graftlm]" in message
    assert "has no get_input_embeddings()" in message or "not a transformers PreTrainedModel" in message


def test_generic_adapter_is_tried_after_every_specific_one():
    assert find_adapter(tiny_llama()).name == "llama"  # the generic one matches too
    assert find_adapter(tiny_opt()).name == "opt"
    assert find_adapter(tiny_gpt2()).name == "generic"


def test_explicit_adapter_is_used_for_an_unlisted_model_type_with_a_warning():
    from graftlm_adapters.llama import LlamaAdapter

    model = tiny_gpt2()
    adapter = LlamaAdapter()
    assert not adapter.matches(model)
    with pytest.warns(UserWarning, match="does not list GPT2LMHeadModel"):
        sllm = graftlm.graft(model, tiny_vae(), own_vocab=True, adapter=adapter)
    assert sllm.adapter is adapter and model.transformer.wte is None


def test_third_party_adapter_found_through_its_entry_point(toy_distribution):
    entries = {e.adapter.name: e for e in list_adapters()}
    assert "gpt2-example" in entries
    assert entries["gpt2-example"].source.startswith("graftlm-toy-adapter 0.1.0")
    model = tiny_gpt2()
    adapter = find_adapter(model)
    assert adapter.name == "gpt2-example"
    sllm = graftlm.graft(model, tiny_vae(), own_vocab=True)
    assert sllm.adapter is adapter and model.transformer.wte is None


def test_cli_lists_third_party_adapter(toy_distribution, capsys):
    assert cli.main(["adapters", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["gpt2-example"]["model_types"] == ["gpt2"]
    assert "graftlm-toy-adapter" in rows["gpt2-example"]["source"]
    assert "opt" in rows


def test_cli_table_names_sources(capsys):
    assert cli.main(["adapters"]) == 0
    out = capsys.readouterr().out
    assert "graftlm_adapters.opt" in out and "graftlm_adapters.llama" in out


class _Chooser:
    """A plugin registered in code whose selection hook overrides the default choice."""

    def __init__(self, wanted: str) -> None:
        self.wanted = wanted

    @graftlm.hookimpl
    def graftlm_select_adapter(self, model, adapters):
        return next(a for a in adapters if a.name == self.wanted)


def test_select_hook_overrides_default_choice():
    chooser = _Chooser("opt")
    plugins.register(chooser)
    try:
        assert find_adapter(tiny_llama()).name == "opt"
    finally:
        plugins.unregister(chooser)
    assert find_adapter(tiny_llama()).name == "llama"


class _BadPlugin:
    @graftlm.hookimpl
    def graftlm_adapters(self):
        return ["not an adapter"]


def test_plugin_returning_a_non_adapter_is_rejected():
    bad = _BadPlugin()
    plugins.register(bad, name="bad-plugin")
    try:
        with pytest.raises(TypeError, match="bad-plugin.*BackboneAdapter"):
            list_adapters()
    finally:
        plugins.unregister(bad)


def test_adapter_interface_is_abstract():
    with pytest.raises(TypeError):
        BackboneAdapter()  # type: ignore[abstract]


class _MyLlamaPlugin:
    @graftlm.hookimpl
    def graftlm_adapters(self):
        from graftlm_adapters.llama import LlamaAdapter

        class MyLlama(LlamaAdapter):
            name = "my-llama"

        return [MyLlama]


def test_third_party_adapter_takes_precedence_over_builtin():
    plugin = _MyLlamaPlugin()
    plugins.register(plugin)
    try:
        assert find_adapter(tiny_llama()).name == "my-llama"
        assert find_adapter(tiny_opt()).name == "opt"
    finally:
        plugins.unregister(plugin)
    assert find_adapter(tiny_llama()).name == "llama"
