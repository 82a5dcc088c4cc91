"""Recipe → model, data, trainer, final evaluation: what ``graftlm train`` runs.

Library use::

    from graftlm.training import load_recipe, train
    result = train(load_recipe("svae-768-h1", ["data_path=/data/wanjuan"]))
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from graftlm.evaluation import evaluate as evaluate_same_bytes
from graftlm.training.batching import (
    ExampleStream,
    TrainBatches,
    heldout_examples,
    train_loader,
)
from graftlm.training.budget import TimeBudget
from graftlm.training.data import CorpusPath, check_source
from graftlm.training.evaluate import (
    evaluate_sllm,
    evaluate_svae,
    heldout_texts,
    reconstruction_table,
)
from graftlm.training.models import Built, build, segmenter_options
from graftlm.training.recipes import TrainConfig
from graftlm.training.trainer import Trainer, TrainResult
from graftlm.atomic import write_text
from graftlm.model_card import card_for


SVAE_SEGMENTS_AFTER_SLLM = 300  # the held-out segments of the SVAE recipes' final evaluation (the first 300)


def corpus_source(cfg: TrainConfig) -> Any:
    """``data_path``, carrying the recipe's ``encoding:`` for text / JSON-lines files."""
    if cfg.encoding and isinstance(cfg.data_path, str) and not cfg.data_path.startswith("packaged:"):
        return CorpusPath(cfg.data_path, cfg.encoding)
    return cfg.data_path


def example_stream(cfg: TrainConfig, built: Built) -> ExampleStream:
    return ExampleStream(built.kind, built.tokenizer, max_tokens=built.segment_tokens, max_sentences=cfg.max_sentences,
                         segmenter_options=segmenter_options(cfg))


def batch_factory(cfg: TrainConfig, built: Built) -> Callable[[int, int, int], Iterable[dict[str, torch.Tensor]]]:
    examples = example_stream(cfg, built)

    def make(start: int, rank: int, world: int):
        ds = TrainBatches(corpus_source(cfg), examples, batch_size=cfg.batch_size, pad_id=built.pad_id,
                          data_format=cfg.data_format, text_field=cfg.text_field,
                          heldout_fraction=cfg.heldout_fraction, seed=cfg.seed, shuffle_buffer=cfg.shuffle_buffer,
                          bucket_pool=cfg.bucket_pool, rank=rank, world_size=world, start=start)
        return train_loader(ds, num_workers=cfg.num_workers, prefetch_factor=cfg.prefetch_factor)

    return make


def heldout(cfg: TrainConfig, built: Built, limit: int | None = None) -> list[Any]:
    return heldout_examples(corpus_source(cfg), example_stream(cfg, built), limit=limit or cfg.eval_size,
                            data_format=cfg.data_format, text_field=cfg.text_field,
                            heldout_fraction=cfg.heldout_fraction, seed=cfg.seed)


def evaluate(cfg: TrainConfig, built: Built, model: torch.nn.Module, examples: list[Any], *,
             full: bool, baseline: bool = False, num_examples: int = 12, generate: bool = False,
             gen_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """SVAE or SLLM metrics on ``examples``; ``full`` adds the reconstruction table / baseline."""
    eval_batch = max(1, min(cfg.batch_size, 64))
    if built.kind == "svae":
        return evaluate_svae(model, examples, pad_id=built.pad_id, batch_size=eval_batch,
                             tokenizer=built.tokenizer if full else None, num_examples=num_examples if full else 0)
    result: dict[str, Any] = evaluate_sllm(model, examples, pad_id=built.pad_id, batch_size=eval_batch)
    if baseline and built.backbone_factory is not None:
        backbone = built.backbone_factory().to(next(model.parameters()).device)
        segmenter = model.segmenter(built.tokenizer)
        texts = heldout_texts(corpus_source(cfg), segmenter, limit=cfg.eval_size, max_sentences=cfg.max_sentences,
                              data_format=cfg.data_format, text_field=cfg.text_field,
                              heldout_fraction=cfg.heldout_fraction, seed=cfg.seed)
        report = evaluate_same_bytes(model, texts, backbone=backbone, tokenizer=built.tokenizer, segmenter=segmenter,
                                     generate=generate, batch_size=max(1, min(eval_batch, 8)), **(gen_options or {}))
        # the same-bytes report is the headline; the window figures stay, prefixed
        result = {**report.to_dict(), **{f"window_{k}": v for k, v in result.items()}}
        del backbone
    if full:  # the SLLM phase may train the VAE's layers: its reconstruction after that phase
        segments = heldout(cfg, replace(built, kind="svae"), limit=SVAE_SEGMENTS_AFTER_SLLM)
        result["svae"] = evaluate_svae(model.vae, segments, pad_id=built.pad_id, batch_size=32,
                                       tokenizer=built.tokenizer, num_examples=num_examples)
    return result


def write_eval(run_dir: Path, result: dict[str, Any]) -> None:
    write_text(run_dir / "eval.json", json.dumps(result, indent=1))
    lines = [f"# Evaluation of {run_dir}", ""]
    lines += [f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in result.items() if k != "examples"]
    if result.get("examples"):
        lines += ["", reconstruction_table(result["examples"])]
    write_text(run_dir / "eval.md", "\n".join(lines) + "\n")


def export(built: Built) -> Callable[[torch.nn.Module, Path], None]:
    def save(model: torch.nn.Module, folder: Path) -> None:
        try:
            if built.kind == "sllm":
                try:  # small: only the trained body weights, the backbone by its hub name / path
                    model.save_pretrained(folder, save_backbone="reference")
                except ValueError:  # a backbone with no source (tiny-opt, GGUF): write every weight
                    model.save_pretrained(folder, save_backbone="weights")
            else:
                model.save_pretrained(folder)
        except Exception as err:  # the checkpoint still holds the weights
            warnings.warn(f"could not export the final model to {folder}: {err}; "
                          "use the checkpoint under checkpoints/ instead", stacklevel=2)
    return save


def train(cfg: TrainConfig, *, resume: bool = False, callbacks: Iterable[Any] = ()) -> TrainResult:
    """Build everything from ``cfg``, train, evaluate the EMA weights on ``eval_size`` held-out
    examples (written to ``RUN_DIR/eval.json`` and ``eval.md``), return the result."""
    check_source(corpus_source(cfg), cfg.data_format)
    torch.manual_seed(cfg.seed)
    built = build(cfg)
    try:  # the final evaluation needs a held-out split: find out now, not after training
        heldout(cfg, built, limit=1)
    except ValueError as err:
        raise ValueError(f"before training: {err}") from err
    cache: dict[str, list[Any]] = {}

    def periodic(model: torch.nn.Module) -> dict[str, Any]:
        if "subset" not in cache:
            cache["subset"] = heldout(cfg, built, limit=cfg.eval_batches * max(1, min(cfg.batch_size, 64)))
        return evaluate(cfg, built, model, cache["subset"], full=False)

    callbacks = list(callbacks) + ([TimeBudget(cfg.max_minutes)] if cfg.max_minutes else [])
    trainer = Trainer(built.model, cfg, batch_factory(cfg, built), evaluate=periodic, export=export(built),
                      callbacks=callbacks)
    result = trainer.fit(resume=resume)
    if trainer.accelerator.is_main_process:
        with trainer.ema_weights() as model, torch.no_grad():
            final = evaluate(cfg, built, model, heldout(cfg, built), full=True, baseline=True)
        trainer.metrics.enabled and trainer.metrics.log("eval_final", result.step,
                                                        {k: v for k, v in final.items() if k != "examples"})
        write_eval(trainer.run_dir, final)
        result.eval = final
        folder = trainer.run_dir / "final"
        if (folder / "README.md").is_file():  # the exported model's card, now with the held-out figures
            figures = {k: v for k, v in final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            write_text(folder / "README.md", card_for(built.model, {
                "data": f"`{cfg.data_path}` ({cfg.data_format}), {result.step} steps of recipe `{cfg.name}`",
                "evaluation": figures}))
    return result
