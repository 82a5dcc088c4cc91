# Issue 11 item 3: SmolLM2 scored on segment-wise concatenated ids (the old baseline) vs its natural
# tokenization (graftlm.evaluate's), on 40 held-out pydoc windows, paper and semantic rules.
# Run: .venv/bin/python scripts/baseline_tokenization.py
import math

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
from graftlm.backbones import load_smollm2
from graftlm.evaluation.likelihood import backbone_cost
from graftlm.segmentation_rules import TokenCounter
from graftlm.segmenter import RegexSegmenter, split_paragraph
from graftlm.training.data import is_heldout, read_corpus

model, tok = load_smollm2(); model.eval()
docs = [d for d in read_corpus("packaged:pydoc") if is_heldout(d, 0.05, 0)]
for rule in ("paper", "semantic"):
    seg = RegexSegmenter(max_tokens=32, tokenizer=tok, rule=rule)
    counter = TokenCounter(tok)
    windows = []
    for d in docs:
        for c in split_paragraph(seg.split(d), 12):
            if len(c) >= 2: windows.append(c)
        if len(windows) >= 40: break
    windows = windows[:40]
    # segment-wise concatenation (the old backbone_ppl)
    nll = n = 0; nbytes = 0
    with torch.no_grad():
        for w in windows:
            ids = [t for s in counter.encode(w) for t in s]
            first = len(counter.encode([w[0]])[0])
            x = torch.tensor([ids]); lp = -F.cross_entropy(model(input_ids=x).logits[0, :-1].float(), x[0, 1:], reduction="none")
            nll += float(-lp[first - 1:].sum()); n += len(ids) - first
            nbytes += len("".join(w[1:]).encode())
    texts = ["".join(w) for w in windows]
    cost = backbone_cost(model, tok, texts, [len(w[0]) for w in windows])
    print(f"{rule}: concatenated segment ids: {n} tokens PPL {math.exp(nll/n):.1f} bits/byte {nll/math.log(2)/nbytes:.3f} | "
          f"natural: {cost.tokens} tokens PPL {math.exp(cost.nats/cost.tokens):.1f} bits/byte {cost.nats/math.log(2)/nbytes:.3f} | {nbytes} bytes")
