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
