"""Held-out evaluation of a SentenceVAE or a grafted SentenceLLM.

SentenceVAE (per held-out segment, teacher-forced unless said otherwise):
* ``loss`` — the model's own training loss (focal or CE), mean over batches weighted by targets;
* ``ppl`` — exp(mean −log p(target)) over all targets (tokens + eos), the paper's PPL;
* ``token_accuracy`` — share of targets that are the argmax;
* ``exact_match`` — share of segments whose *greedy generation* from their vector reproduces the
  token ids exactly (no teacher forcing).

SentenceLLM, on held-out paragraph windows (training-time, no backbone needed):
* ``sllm_ppl`` — exp((−log p of every token + every eos) / tokens) of the sentence decoder over
  sentences 2…n, with a causal backbone: each sentence's eos is a cost of the text, and the
  denominator counts text tokens only (the figure `graftlm.evaluate` reports too);
* ``termination_accuracy`` — argmax of the termination head vs "another sentence follows"
  (a window cut out of a longer document is labelled "continue" at its end).

Against the backbone, on the same bytes: `heldout_texts` + `graftlm.evaluate` (bits per byte,
the backbone on its natural tokenization), which `graftlm eval` and the end of training run.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from graftlm.segmenter import split_paragraph
from graftlm.sllm.model import termination_targets
from graftlm.training.batching import batches_of, collate_sllm, collate_svae
from graftlm.training.data import is_heldout, read_corpus


@torch.no_grad()
def evaluate_svae(model: torch.nn.Module, examples: list[list[int]], *, pad_id: int, batch_size: int = 64,
                  generate: bool = True, tokenizer: Any = None, num_examples: int = 0,
                  keep_generated: bool = False) -> dict[str, Any]:
    """Metrics over ``examples`` (token-id lists): teacher-forced loss, PPL and token accuracy (over
    tokens + eos), and with ``generate`` the share decoded back exactly (greedy). With ``tokenizer``
    and ``num_examples`` > 0 the result also has ``examples``: ``[{"input", "output", "exact"}]`` for
    a Table-2-like view; with ``keep_generated``, ``generated``: every decode, in input order."""
    if not examples:
        raise ValueError("no held-out examples to evaluate")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = nll_sum = 0.0
    n_targets = n_correct = n_exact = 0
    shown: list[dict[str, Any]] = []
    generated: list[list[int]] = []
    for batch in batches_of(examples, batch_size, collate_svae, pad_id):
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        out = model(input_ids=ids, attention_mask=mask)
        tm = out.target_mask
        n = int(tm.sum())
        loss_sum += float(out.loss) * n
        nll_sum += float(-(out.token_logprobs * tm).sum())
        n_targets += n
        targets = torch.cat([ids, ids.new_zeros(ids.shape[0], 1)], dim=1)
        lengths = mask.sum(1)
        targets[torch.arange(ids.shape[0], device=device), lengths] = model.config.eos_token_id
        n_correct += int(((out.logits.argmax(-1) == targets) & tm).sum())
        if generate:
            cap = int(lengths.max()) + 1
            if model.config.position == "sinusoidal":  # its table ends at max_tokens
                cap = min(cap, model.config.max_tokens)
            gen = model.generate(out.sentence_vectors, max_new_tokens=cap)
            generated += gen if keep_generated else []
            for row, length, g in zip(ids.tolist(), lengths.tolist(), gen):
                ok = list(g) == row[:length]
                n_exact += ok
                if tokenizer is not None and len(shown) < num_examples:
                    shown.append({"input": tokenizer.decode(row[:length]), "output": tokenizer.decode(list(g)),
                                  "exact": ok})
    model.train(was_training)
    result: dict[str, Any] = {"segments": len(examples), "targets": n_targets, "loss": loss_sum / n_targets,
                              "ppl": math.exp(nll_sum / n_targets), "token_accuracy": n_correct / n_targets}
    if generate:
        result["exact_match"] = n_exact / len(examples)
    if shown:
        result["examples"] = shown
    if keep_generated:
        result["generated"] = generated
    return result


@torch.no_grad()
def evaluate_sllm(model: torch.nn.Module, windows: list[list[list[int]]], *, pad_id: int,
                  batch_size: int = 4) -> dict[str, float]:
    """Sentence-decoder PPL (eos included as a cost, per text token) and termination accuracy."""
    if not windows:
        raise ValueError("no held-out paragraphs to evaluate")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = nll = 0.0
    n = n_tok = term_ok = term_n = 0
    for batch in batches_of(windows, batch_size, collate_sllm, pad_id):
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(**batch)
        tm = out.target_mask
        k = int(tm.sum())
        loss_sum += float(out.loss) * k
        nll += float(-(out.token_logprobs * tm).sum())
        n += k
        n_tok += int(batch["token_mask"][:, 1:].sum())
        sm = batch["sentence_mask"]
        follows = termination_targets(sm, batch.get("document_ends"))
        term_ok += int(((out.termination_logits.argmax(-1) == follows.long()) & sm).sum())
        term_n += int(sm.sum())
    model.train(was_training)
    return {"paragraphs": len(windows), "targets": n, "loss": loss_sum / max(n, 1),
            "sllm_ppl": math.exp(nll / max(n_tok, 1)), "termination_accuracy": term_ok / max(term_n, 1)}


def heldout_texts(source: Any, segmenter: Any, *, limit: int, max_sentences: int, data_format: str = "auto",
                  text_field: str = "content", heldout_fraction: float = 0.01, seed: int = 0) -> list[str]:
    """Up to ``limit`` held-out texts for `graftlm.evaluate`: each held-out document cut into
    windows of at most ``max_sentences`` segments (joined back into text, nothing dropped)."""
    out: list[str] = []
    for doc in read_corpus(source, data_format=data_format, text_field=text_field):
        if not is_heldout(doc, heldout_fraction, seed):
            continue
        for chunk in split_paragraph(segmenter.split(doc), max_sentences):
            if len(chunk) >= 2:
                out.append("".join(chunk))
            if len(out) >= limit:
                return out
    if not out:
        raise ValueError(f"no held-out text with two or more segments in {source!r} "
                         f"(heldout_fraction={heldout_fraction}); raise heldout_fraction")
    return out


def reconstruction_table(examples: list[dict[str, Any]]) -> str:
    """Markdown table (input | reconstruction | exact) like the paper's Table 2."""
    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", "⏎")

    lines = ["| input segment | reconstruction | exact |", "|---|---|---|"]
    lines += [f"| {cell(e['input'])} | {cell(e['output'])} | {'yes' if e['exact'] else 'no'} |" for e in examples]
    return "\n".join(lines)
