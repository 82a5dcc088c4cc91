"""``graftlm eval RUN_DIR`` — held-out metrics of a run's latest checkpoint (EMA weights).

A training run (``graftlm train``): rebuilds the model from ``RUN_DIR/recipe.yaml``, loads the
checkpoint and evaluates ``eval_size`` held-out examples. For a SentenceLLM the headline is
`graftlm.evaluate`: bits per byte of the same held-out bytes for the SLLM and its backbone (on its
natural tokenization), each side's PPL, termination accuracy, and with ``--generate`` free-running
generation metrics for both sides. A demo run folder (``graftlm demo``): both of its parts, the
SentenceVAE's reconstruction and the SentenceLLM against the backbone. Writes ``eval.json`` /
``eval.md`` into the run folder and prints a table (``--json``: the JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
import yaml

from graftlm.demo.inputs import load_backbone
from graftlm.demo.run_folder import RunFolder, is_demo_run
from graftlm.evaluation import EvaluationReport
from graftlm.evaluation import evaluate as evaluate_texts
from graftlm.evaluation.speed import shared_copy
from graftlm.safetensors_io import read_safetensors
from graftlm.segmenter import split_paragraph
from graftlm.sllm import load
from graftlm.training import checkpointing as ckpt
from graftlm.training.batching import ExampleStream
from graftlm.training.evaluate import evaluate_svae, reconstruction_table
from graftlm.training.models import build
from graftlm.training.pipeline import evaluate, heldout, write_eval
from graftlm.training.recipes import TrainConfig, check_keys, parse_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder written by graftlm train or graftlm demo")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint folder (default: the latest complete one)")
    parser.add_argument("--raw", action="store_true", help="evaluate the raw weights instead of the EMA")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set eval_size=200 or --set data_path=...")
    parser.add_argument("--examples", type=int, default=12, help="reconstructions shown (SVAE)")
    parser.add_argument("--generate", action="store_true",
                        help="SLLM: also continue held-out prompts with both sides and report judge PPL, "
                             "entropy, distinct-n and repeated sentences (slower)")
    parser.add_argument("--texts", type=int, default=None,
                        help="SLLM: held-out texts scored (default: the recipe's eval_size; 16 for a demo run)")
    parser.add_argument("--prompts", type=int, default=10, help="--generate: held-out prompts continued (default 10)")
    parser.add_argument("--new-tokens", type=int, default=64, help="--generate: tokens per continuation (default 64)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder for eval.json / eval.md (default: the run folder; use another one for an evaluation "
                             "on other data, e.g. --set data_path=packaged:kjv, so the run's own evaluation stays)")


def evaluate_run(run_dir: str | Path, *, checkpoint: str | Path | None = None, raw: bool = False,
                 overrides: list[str] | None = None, examples: int = 12, generate: bool = False,
                 texts: int | None = None, prompts: int = 10, new_tokens: int = 64,
                 out: str | Path | None = None) -> dict:
    run_dir = Path(run_dir)
    out_dir = Path(out) if out is not None else run_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; pass a folder for eval.json / eval.md")
    if not run_dir.exists():
        raise ValueError(f"{run_dir} does not exist: pass a folder written by graftlm train or graftlm demo")
    if is_demo_run(run_dir):
        result = evaluate_demo_run(run_dir, generate=generate, texts=texts or 16, examples=examples,
                                   gen_options={"num_prompts": prompts, "new_tokens": new_tokens})
    else:
        result = _evaluate_train_run(run_dir, checkpoint=checkpoint, raw=raw, overrides=overrides, examples=examples,
                                     generate=generate, texts=texts, prompts=prompts, new_tokens=new_tokens)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_eval(out_dir, result)
    return result


def _evaluate_train_run(run_dir: Path, *, checkpoint: str | Path | None, raw: bool, overrides: list[str] | None,
                        examples: int, generate: bool, texts: int | None, prompts: int, new_tokens: int) -> dict:
    recipe = run_dir / "recipe.yaml"
    if not recipe.is_file():
        raise ValueError(f"{recipe} does not exist: is {run_dir} a graftlm run folder?")
    data = yaml.safe_load(recipe.read_text())
    check_keys(data, str(recipe))
    cfg = TrainConfig.from_dict(data).replace(**parse_overrides(overrides))
    if texts:
        cfg = cfg.replace(eval_size=texts)
    path = Path(checkpoint) if checkpoint else ckpt.latest_checkpoint(run_dir)
    if path is None:
        raise ValueError(f"{run_dir} has no complete checkpoint yet")
    torch.manual_seed(cfg.seed)
    built = build(cfg)
    weights = path / ("model.safetensors" if raw or not (path / "ema.safetensors").is_file() else "ema.safetensors")
    state = read_safetensors(weights, "checkpoint weights")
    ckpt.check_fits(built.model, state, f"{weights} (for the recipe's model)")
    built.model.load_state_dict(state, strict=False)  # checked above, tied copies included
    with torch.no_grad():
        result = evaluate(cfg, built, built.model, heldout(cfg, built), full=True, baseline=True, num_examples=examples,
                          generate=generate, gen_options={"num_prompts": prompts, "new_tokens": new_tokens})
    return {"checkpoint": str(path), "weights": weights.stem, **result}


def evaluate_demo_run(run_dir: Path, *, generate: bool, texts: int, examples: int,
                      gen_options: dict | None = None) -> dict:
    """Both parts of a `graftlm demo` run folder on its own held-out paragraphs."""
    run = RunFolder.open(run_dir)
    run.require_trained("sllm")
    settings = run.state["settings"]
    backbone, tokenizer, _ = load_backbone(settings["model"])
    sllm = load(run.sllm_model_dir, backbone=shared_copy(backbone)).eval()
    _, heldout_docs = run.read_split()
    segmenter = sllm.segmenter(tokenizer)
    chunks = [c for doc in heldout_docs for c in split_paragraph(segmenter.split(doc), int(settings["max_sentences"]))]
    chosen = ["".join(c) for c in chunks if len(c) >= 2][:texts]
    with torch.no_grad():
        report = evaluate_texts(sllm, chosen, backbone=backbone, tokenizer=tokenizer, segmenter=segmenter,
                                  generate=generate, **(gen_options or {}))
        segments = [s for doc in heldout_docs for s in ExampleStream("svae", tokenizer, max_tokens=sllm.segment_budget,
                                                                      max_sentences=1).examples(doc)][:256]
        svae = evaluate_svae(sllm.vae, segments, pad_id=sllm.vae.config.pad_token_id, batch_size=32,
                             tokenizer=tokenizer, num_examples=examples)
    return {"run": str(run_dir), **report.to_dict(), "svae": svae}


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = evaluate_run(args.run_dir, checkpoint=args.checkpoint, raw=args.raw, overrides=args.overrides,
                              examples=args.examples, generate=args.generate, texts=args.texts, prompts=args.prompts,
                              new_tokens=args.new_tokens, out=args.out)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return 0
    print(format_result(result))
    return 0


def format_result(result: dict) -> str:
    """Tables for the console: the same-bytes report (SLLM), reconstruction (SVAE), the rest as lines."""
    lines = []
    fields = EvaluationReport.__dataclass_fields__
    if all(k in result for k in ("bytes", "sllm_bits_per_byte")):
        report = EvaluationReport(**{k: result[k] for k in fields if k in result})
        lines += [report.table(), ""]
        for sample in (result.get("generation") or {}).get("samples", [])[:5]:
            lines += [f"[{sample['mode']}] prompt: …{sample['prompt'][-80:]!r}", f"  SLLM:     {sample['sllm']!r}",
                      f"  backbone: {sample['backbone']!r}"]
    svae = result.get("svae", result if "exact_match" in result else None)
    if svae:
        lines.append(f"SentenceVAE: {svae['segments']} held-out segments, exact match {100 * svae.get('exact_match', 0):.1f} %, "
                     f"token accuracy {100 * svae['token_accuracy']:.1f} %, PPL {svae['ppl']:.3f}")
        if svae.get("examples"):
            lines.append(reconstruction_table(svae["examples"]))
    rest = {k: v for k, v in result.items() if k not in fields and k not in ("svae", "examples", "bits_per_byte_ratio")
            and not isinstance(v, (dict, list))}
    lines += [f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in rest.items()]
    return "\n".join(lines)
