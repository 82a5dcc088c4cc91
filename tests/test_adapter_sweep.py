"""The architecture sweep: 39 decoder-only architectures of the installed transformers (tiny random
configs), plus TeleChat from Tele-AI's own code, each graft, train (forward + backward), stay
causal, batch exactly and generate — or are refused at `graft()` with an error naming the
architecture and the property it lacks.

docs/adapters.md holds the same table in words; change both together.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from graftlm import graft
from graftlm.plugins.selftest import SelfTestError
from graftlm.segmenter import SegmentedBatch
from graftlm.vae import SentenceVAE, SentenceVAEConfig

from fixtures.telechat import tiny_telechat
from fixtures.tiny_archs import ARCHS, VOCAB, tiny_arch
from fixtures.tiny_models import one_thread  # noqa: F401

# architecture -> words the refusal must contain; every other one must graft and pass everything
REFUSED = {
    "recurrent_gemma": "ignores the padding mask",  # recurrent layers run over padding
    "gemma3n": "vocabulary-sized embeddings besides its token embedding (embed_tokens_per_layer)",
    "rwkv": "ignores the padding mask",  # state passed as `state`, mask unused
}
FIXED = dict(ignore_stop=True, ignore_eos=True, max_tokens_per_sentence=3, max_new_sentences=2)


@pytest.fixture(scope="module")
def vae() -> SentenceVAE:
    torch.manual_seed(1)
    vae = SentenceVAE(SentenceVAEConfig(vocab_size=VOCAB, hidden_size=32, num_heads=4, num_layers=1, max_tokens=8))
    return vae.eval()


def _batch(counts: list[int], seed: int, S: int | None = None, T: int = 4) -> SegmentedBatch:
    """Random paragraphs with ``counts[b]`` sentences of 1..T tokens, right-padded."""
    g = torch.Generator().manual_seed(seed)
    S = S or max(counts)
    ids = torch.randint(3, VOCAB, (len(counts), S, T), generator=g)
    lengths = torch.randint(1, T + 1, (len(counts), S), generator=g)
    sm = torch.arange(S)[None] < torch.tensor(counts)[:, None]
    tm = (torch.arange(T)[None, None] < lengths[..., None]) & sm[..., None]
    return SegmentedBatch(ids * tm, tm, sm)


def _row(batch: SegmentedBatch, b: int) -> SegmentedBatch:
    n = int(batch.sentence_mask[b].sum())
    return SegmentedBatch(batch.input_ids[b : b + 1, :n], batch.token_mask[b : b + 1, :n], batch.sentence_mask[b : b + 1, :n])


BUILDERS = {**{name: (lambda name=name: tiny_arch(name)) for name in ARCHS}, "telechat": tiny_telechat}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_architecture_grafts_trains_is_causal_and_batches_exactly(name, vae):
    model = BUILDERS[name]()
    embed = model.get_input_embeddings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name in REFUSED:
            with pytest.raises(SelfTestError) as err:
                graft(model, vae, freeze="vae")
            assert type(model).__name__ in str(err.value) and REFUSED[name] in str(err.value)
            assert model.get_input_embeddings() is embed  # refused before anything was modified
            return
        sllm = graft(model, vae, freeze="vae")
    assert model.get_input_embeddings() is None

    # training: one forward/backward on right-padded paragraphs reaches the body's weights
    sllm.train()
    batch = _batch([3, 2], seed=0)
    out = sllm(batch.input_ids, batch.token_mask, batch.sentence_mask)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in sllm.body.parameters())
    sllm.eval()

    # causality: a changed sentence 3 leaves the states of sentences 1-2 as they were
    with torch.no_grad():
        before = sllm(batch.input_ids, batch.token_mask, batch.sentence_mask).hidden_states
        ids = batch.input_ids.clone()
        ids[0, 2] = torch.where(batch.token_mask[0, 2], (ids[0, 2] + 7) % (VOCAB - 3) + 3, 0)
        after = sllm(ids, batch.token_mask, batch.sentence_mask).hidden_states
    assert torch.allclose(after[0, :2], before[0, :2], atol=1e-5)
    assert not torch.allclose(after[0, 2], before[0, 2], atol=1e-5)

    # batch == alone in training too: the shorter, right-padded row's states are its own
    with torch.no_grad():
        row = _row(batch, 1)
        alone = sllm(row.input_ids, row.token_mask, row.sentence_mask).hidden_states
    assert torch.allclose(alone[0], before[1, :2], atol=1e-5)

    # batch == alone: rows of different lengths generate what each generates by itself
    prompts = _batch([3, 1], seed=1)
    together = sllm.generate(prompts, return_dict=True, output_hidden_states=True, **FIXED)
    assert together.num_new_sentences == [2, 2]
    for b in range(2):
        alone = sllm.generate(_row(prompts, b), return_dict=True, output_hidden_states=True, **FIXED)
        assert alone.token_ids[0] == together.token_ids[b]
        assert torch.allclose(alone.hidden_states[0], together.hidden_states[b], atol=1e-5)
