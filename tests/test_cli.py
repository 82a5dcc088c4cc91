"""The `graftlm` command line itself: --version, every command's --help, help text on every option,
missing paths, and the generate flags that are checked before any model loads."""

from __future__ import annotations

import argparse
import importlib

import pytest

import graftlm
from graftlm.cli import COMMANDS, main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"graftlm {graftlm.__version__}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ") and command in out.splitlines()[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help_text(command):
    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    bare = [a.option_strings or a.dest for a in parser._actions
            if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not bare, f"`graftlm {command}` options without help: {bare}"


def test_no_command_prints_the_overview(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


@pytest.mark.parametrize("argv", [["generate", "{p}", "Hello."], ["reconstruct", "{p}", "Hello."],
                                  ["plot", "{p}"], ["demo", "--resume", "{p}"]])
def test_a_missing_run_folder_is_reported_as_missing(tmp_path, capsys, argv):
    missing = str(tmp_path / "no-such-run")
    assert main([a.format(p=missing) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and missing in err


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "0.7"], "--temperature only apply when sampling: add --do-sample"),
    (["--top-k", "5", "--top-p", "0.9"], "--top-k, --top-p only apply when sampling"),
    (["--do-sample", "--temperature", "0"], "--temperature must be > 0"),
    (["--do-sample", "--top-k", "0"], "--top-k must be >= 1"),
    (["--do-sample", "--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--sentences", "0"], "--sentences must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_generate_rejects_inconsistent_sampling_flags(tmp_path, capsys, flags, message):
    assert main(["generate", str(tmp_path), "Hello.", *flags]) == 2
    assert message in capsys.readouterr().err


def test_generate_needs_a_prompt_or_interactive_mode(tmp_path, capsys):
    assert main(["generate", str(tmp_path)]) == 2
    assert "give a prompt to continue, or -i" in capsys.readouterr().err


def test_sampling_options_match_the_api():
    from graftlm.demo.cli_generate import sampling_options

    args = argparse.Namespace(do_sample=True, temperature=0.8, top_k=20, top_p=0.95, seed=3)
    opts = sampling_options(args)
    assert {k: opts[k] for k in ("do_sample", "temperature", "top_k", "top_p")} == \
        {"do_sample": True, "temperature": 0.8, "top_k": 20, "top_p": 0.95}
    assert opts["generator"].initial_seed() == 3
    greedy = argparse.Namespace(do_sample=False, temperature=None, top_k=None, top_p=None, seed=0)
    assert sampling_options(greedy) == {}


def test_demo_refuses_a_budget_too_small_to_mean_anything(tmp_path, capsys):
    assert main(["demo", "--minutes", "0.01", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--minutes 0.01 is too small" in err and "smallest budget is --minutes 1" in err
    assert not (tmp_path / "run").exists()


def test_demo_threads_must_be_positive(tmp_path, capsys):
    assert main(["demo", "--threads", "0", "--out", str(tmp_path / "run")]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


def test_make_demo_counts_its_environment_setup_in_the_budget():
    from graftlm.demo.cli_demo import STARTED_ENV, command_start

    assert command_start({STARTED_ENV: "9970.0"}, now_perf=50.0, now_epoch=10000.0) == (20.0, 30.0)
    for bad in ({}, {STARTED_ENV: "soon"}, {STARTED_ENV: "20000"}, {STARTED_ENV: "1000"}):  # unset, junk, future, stale
        assert command_start(bad, now_perf=50.0, now_epoch=10000.0) == (50.0, 0.0)
