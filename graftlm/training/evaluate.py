"""Held-out evaluation of a SentenceVAE or a grafted SentenceLLM.

SentenceVAE (per held-out segment, teacher-forced unless said otherwise):
* ``loss`` — the model's own training loss (focal or CE), mean over batches weighted by targets;
* ``ppl`` — exp(mean −log p(target)) over all targets (tokens + eos), the paper's PPL;
* ``token_accuracy`` — share of targets that are the argmax;
* ``exact_match`` — share of segments whose *greedy generation* from their vector reproduces the
  token ids exactly (no teacher forcing).

SentenceLLM, on held-out paragraph windows:
* ``sllm_ppl`` — exp(mean −log p) of the sentence decoder over sentences 2…n (tokens + eos),
  with a causal backbone; ``sllm_ppl_tokens`` the same without the eos targets;
* ``backbone_ppl`` — the un-grafted backbone's own next-token PPL on *exactly those tokens*
  (sentences 2…n, same tokenizer, each segment tokenized alone, conditioned on all earlier tokens
  of the window), so ``sllm_ppl_tokens`` and ``backbone_ppl`` are directly comparable;
* ``termination_accuracy`` — argmax of the termination head vs "another sentence follows".
"""

from __future__ import annotations

import math
from typing import Any

import torch

from graftlm.training.batching import batches_of, collate_sllm, collate_svae


@torch.no_grad()
def evaluate_svae(model: torch.nn.Module, examples: list[list[int]], *, pad_id: int, batch_size: int = 64,
                  generate: bool = True, tokenizer: Any = None, num_examples: int = 0) -> dict[str, Any]:
    """Metrics over ``examples`` (token-id lists). With ``tokenizer`` and ``num_examples`` > 0
    the result also has ``examples``: ``[{"input", "output", "exact"}]`` for a Table-2-like view."""
    if not examples:
        raise ValueError("no held-out examples to evaluate")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = nll_sum = 0.0
    n_targets = n_correct = n_exact = 0
    shown: list[dict[str, Any]] = []
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
            gen = model.generate(out.sentence_vectors, max_new_tokens=int(lengths.max()) + 1)
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
    return result


@torch.no_grad()
def evaluate_sllm(model: torch.nn.Module, windows: list[list[list[int]]], *, pad_id: int,
                  batch_size: int = 4) -> dict[str, float]:
    """Sentence-decoder PPL (with and without eos) and termination accuracy over ``windows``."""
    if not windows:
        raise ValueError("no held-out paragraphs to evaluate")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = nll = nll_tok = 0.0
    n = n_tok = term_ok = term_n = 0
    for batch in batches_of(windows, batch_size, collate_sllm, pad_id):
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(**batch)
        tm = out.target_mask
        lp = out.token_logprobs * tm
        # the eos target of each decoded sentence sits at index = its token count
        eos = torch.zeros_like(tm)
        lengths = batch["token_mask"].sum(-1)  # (B, S)
        eos.scatter_(-1, lengths[..., None], True)
        eos &= tm
        k = int(tm.sum())
        loss_sum += float(out.loss) * k
        nll += float(-lp.sum())
        n += k
        nll_tok += float(-(lp * ~eos).sum())
        n_tok += int((tm & ~eos).sum())
        sm = batch["sentence_mask"]
        follows = torch.nn.functional.pad(sm[:, 1:], (0, 1), value=False)
        term_ok += int(((out.termination_logits.argmax(-1) == follows.long()) & sm).sum())
        term_n += int(sm.sum())
    model.train(was_training)
    return {"paragraphs": len(windows), "targets": n, "loss": loss_sum / max(n, 1),
            "sllm_ppl": math.exp(nll / max(n, 1)), "sllm_ppl_tokens": math.exp(nll_tok / max(n_tok, 1)),
            "termination_accuracy": term_ok / max(term_n, 1)}


@torch.no_grad()
def backbone_ppl(backbone: torch.nn.Module, windows: list[list[list[int]]], *, batch_size: int = 4) -> dict[str, float]:
    """The un-grafted causal LM's PPL on the tokens of sentences 2…n of each window, the window's
    segment token ids concatenated (each segment tokenized alone, as the SLLM sees them)."""
    device = next(backbone.parameters()).device
    backbone.eval()
    nll, n = 0.0, 0
    for i in range(0, len(windows), batch_size):
        chunk = windows[i:i + batch_size]
        rows = [[t for seg in w for t in seg] for w in chunk]
        first = [len(w[0]) for w in chunk]  # tokens of sentence 1: context only
        length = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        attn = torch.zeros(len(rows), length, dtype=torch.long)
        score = torch.zeros(len(rows), length, dtype=torch.bool)
        for b, r in enumerate(rows):
            ids[b, :len(r)] = torch.tensor(r)
            attn[b, :len(r)] = 1
            score[b, first[b]:len(r)] = True
        logits = backbone(input_ids=ids.to(device), attention_mask=attn.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None].to(device))[..., 0]
        m = score[:, 1:].to(device)
        nll += float(-(logp * m).sum())
        n += int(m.sum())
    return {"backbone_ppl": math.exp(nll / max(n, 1)), "backbone_targets": n}


def reconstruction_table(examples: list[dict[str, Any]]) -> str:
    """Markdown table (input | reconstruction | exact) like the paper's Table 2."""
    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", "⏎")

    lines = ["| input segment | reconstruction | exact |", "|---|---|---|"]
    lines += [f"| {cell(e['input'])} | {cell(e['output'])} | {'yes' if e['exact'] else 'no'} |" for e in examples]
    return "\n".join(lines)
