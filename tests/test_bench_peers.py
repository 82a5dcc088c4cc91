"""The bench's peers (HF prompt lookup, assisted generation, the first-k-layers draft) and their
rows, on tiny random backbones (speed figures themselves come from `graftlm bench`, not tests)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

from graftlm.bench import cli_bench
from graftlm.bench.models import Backbone
from graftlm.bench.peer_suite import best_identical_peer, peer_rows
from graftlm.bench.peers import decoder_layers, first_layers_draft, peer_runners
from graftlm.evaluation.throughput import lean_generate
from graftlm.tokenization import ByteTokenizer


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def tiny_opt():
    torch.manual_seed(0)
    cfg = OPTConfig(vocab_size=259, hidden_size=16, num_hidden_layers=2, ffn_dim=32, num_attention_heads=2,
                    max_position_embeddings=512, word_embed_proj_dim=16, pad_token_id=0, bos_token_id=1,
                    eos_token_id=2)
    return Backbone("tiny-opt", OPTForCausalLM(cfg).eval(), ByteTokenizer())


def _prompt(n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    half = torch.randint(3, 259, (1, n // 2), generator=g)
    return torch.cat([half, half], 1)  # repeated text: prompt lookup finds candidates


def test_draft_keeps_first_k_layers_and_shares_weights(llama):
    draft = first_layers_draft(llama, 2)
    assert len(draft.model.layers) == 2 and draft.config.num_hidden_layers == 2
    assert len(llama.model.layers) == 3 and llama.config.num_hidden_layers == 3
    assert draft.model.layers[1].mlp.up_proj.weight is llama.model.layers[1].mlp.up_proj.weight
    assert draft.lm_head.weight is llama.lm_head.weight


def test_draft_computes_what_a_two_layer_model_with_those_weights_computes(llama):
    x = _prompt()
    cfg = LlamaConfig.from_dict({**llama.config.to_dict(), "num_hidden_layers": 2})
    small = LlamaForCausalLM(cfg).eval()
    state = {k: v for k, v in llama.state_dict().items() if ".layers.2." not in k}
    small.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(first_layers_draft(llama, 2)(input_ids=x).logits, small(input_ids=x).logits)


def test_draft_with_k_out_of_range_is_refused(llama):
    with pytest.raises(ValueError, match="1 <= k < 3"):
        first_layers_draft(llama, 3)


def test_model_without_a_layer_list_is_named_in_the_error():
    class NoLayers(torch.nn.Module):
        config = LlamaConfig(num_hidden_layers=2)

    with pytest.raises(ValueError, match="NoLayers"):
        decoder_layers(NoLayers())


@pytest.mark.parametrize("method", ["prompt_lookup-5", "prompt_lookup-10", "assisted:first-1"])
def test_speculative_greedy_output_equals_plain_greedy(llama, method):
    x = _prompt()
    runners = peer_runners(llama, x, 12, sample=False, drafts={"first-1": first_layers_draft(llama, 1)})
    assert runners[method]() == 12
    torch.testing.assert_close(runners[method].last, lean_generate(llama, x, 12), rtol=0, atol=0)


def test_sampled_runs_are_reseeded_so_repeats_agree(llama):
    run = peer_runners(llama, _prompt(), 10, sample=True, lookup=())["hf_generate"]
    run()
    first = run.last.clone()
    run()
    assert torch.equal(first, run.last)
    greedy = lean_generate(llama, _prompt(), 10)
    assert not torch.equal(first, greedy)  # it did sample (T 0.8 on a random model)


def test_peers_refuse_batches_over_one(llama):
    with pytest.raises(ValueError, match="batch 1 only"):
        peer_runners(llama, torch.ones(2, 8, dtype=torch.long), 4, sample=False)


def test_peer_rows_mark_identical_outputs_and_find_the_best_peer(tiny_opt):
    rows = peer_rows(tiny_opt, new_tokens=6, prompt_tokens=16, sentence_lens=(3,), sources=("pydoc",),
                     modes=("greedy",), self_draft_layers=1, repeats=1, log=lambda m: None)
    by = {r["method"]: r for r in rows}
    assert set(by) == {"hf_generate", "prompt_lookup-5", "prompt_lookup-10", "assisted:first-1-layers",
                       "lean_loop", "sllm-H1 L=3"}
    assert by["lean_loop"]["equals_greedy"] is True
    assert by["sllm-H1 L=3"]["equals_greedy"] is False
    assert all(r["tokens"] == 6 for r in rows)
    best = best_identical_peer(rows, "pydoc")
    assert best["method"] != "sllm-H1 L=3" and best["equals_greedy"]


def _args(*argv):
    p = argparse.ArgumentParser()
    cli_bench.add_arguments(p)
    return p.parse_args(list(argv))


def test_trained_option_must_be_a_demo_run(tmp_path, capsys):
    code = cli_bench.run(_args("--backbones", "tiny-opt", "--parts", "peers", "--trained", str(tmp_path),
                               "--out", str(tmp_path / "out")))
    assert code == 2
    assert "not a `graftlm demo` run folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_negative_self_draft_layers_are_refused(tmp_path, capsys):
    code = cli_bench.run(_args("--parts", "peers", "--self-draft-layers", "-1", "--out", str(tmp_path / "o")))
    assert code == 2 and "--self-draft-layers" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_peers_part_writes_its_table(tmp_path):
    out = tmp_path / "out"
    code = cli_bench.run(_args("--backbones", "tiny-opt", "--parts", "peers", "--peer-backbones", "tiny-opt", "--peer-tokens", "4",
                               "--sentence-len", "2", "--self-draft-layers", "1", "--repeats", "1",
                               "--prompt-tokens", "16", "--threads", "1", "--out", str(out)))
    assert code == 0
    rows = json.loads((out / "results.json").read_text())["peers"]
    assert {r["source"] for r in rows} >= {"pydoc"} and {r["mode"] for r in rows} == {"greedy", "sampled"}
    text = (out / "results.md").read_text()
    assert "prompt_lookup-10" in text and "× best identical peer" in text


def _row(method, tps, equal, source="pydoc"):
    return dict(backbone="b", source=source, mode="greedy", batch=1, method=method, tokens=64, tokens_per_s=tps,
                speedup=tps / 10.0, cpu_speedup=tps / 10.0, equals_greedy=equal, note="")


def test_peers_table_divides_the_sllm_by_the_fastest_identical_peer():
    from graftlm.bench.peer_cli import peers_markdown

    rows = [_row("hf_generate", 10.0, True), _row("prompt_lookup-10", 25.0, True),
            _row("assisted:x", 40.0, False), _row("sllm-H1 L=8", 50.0, False)]
    line = next(l for l in peers_markdown(rows).splitlines() if l.startswith("| sllm-H1 L=8"))
    assert "2.00× prompt_lookup-10" in line  # 50 / 25: the faster assisted row is not output-identical
    assert "| no |" in line


def test_trained_run_without_a_finished_sentence_llm_is_refused(tmp_path, capsys):
    (tmp_path / "state.json").write_text(json.dumps({"phases": {"svae": {"done": True}}}))
    code = cli_bench.run(_args("--parts", "peers", "--trained", str(tmp_path), "--out", str(tmp_path / "out")))
    assert code == 2 and "no trained SentenceLLM yet" in capsys.readouterr().err
