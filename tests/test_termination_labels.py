"""Stop labels carry content, not whitespace or window cuts; sentence k is decoded from position k-1."""

from __future__ import annotations

import random

import pytest
import torch

from graftlm import graft
from graftlm.segmenter import RegexSegmenter, segment_and_tokenize
from graftlm.sllm.model import termination_targets
from graftlm.tokenization import ByteTokenizer
from graftlm.training.batching import ExampleStream, Window, collate_sllm

from fixtures.tiny_models import BACKBONES, TEXTS, one_thread, paragraphs_batch, tiny_opt, tiny_vae  # noqa: F401


def test_window_cuts_are_never_labelled_stop():
    doc = " ".join(f"Sentence number {i} is here." for i in range(23))
    stream = ExampleStream("sllm", ByteTokenizer(), max_tokens=32, max_sentences=5)
    windows = stream.examples(doc)
    assert len(windows) == 5 and all(isinstance(w, Window) for w in windows)
    assert [w.continues for w in windows] == [True, True, True, True, False]
    batch = collate_sllm(windows, 0)
    targets = termination_targets(batch["sentence_mask"], batch["document_ends"])
    last = batch["sentence_mask"].sum(1) - 1
    stop_at_last = ~targets[torch.arange(len(windows)), last]
    assert stop_at_last.tolist() == [False, False, False, False, True]  # only the document's end stops
    assert int((~targets & batch["sentence_mask"]).sum()) == 1


def test_windows_pickle_with_their_flag():
    import pickle

    w = pickle.loads(pickle.dumps(Window([[1, 2], [3]], continues=True)))
    assert w == [[1, 2], [3]] and w.continues is True


def test_forward_uses_document_ends_for_the_last_sentence():
    sllm = graft(tiny_opt(), tiny_vae()).eval()
    batch = paragraphs_batch(TEXTS)
    with torch.no_grad():
        ends = sllm(**batch.as_model_inputs())
        cont = sllm(**batch.as_model_inputs(), document_ends=torch.tensor([False, True, True]))
    assert not torch.isclose(ends.termination_loss, cont.termination_loss)
    assert torch.equal(ends.decoder_loss, cont.decoder_loss)


def test_bad_document_ends_is_rejected():
    sllm = graft(tiny_opt(), tiny_vae()).eval()
    batch = paragraphs_batch(TEXTS)
    with pytest.raises(ValueError, match="document_ends must be a \\(batch,\\) bool tensor"):
        sllm(**batch.as_model_inputs(), document_ends=torch.tensor([True]))


@pytest.mark.parametrize("name", list(BACKBONES))
def test_sentence_k_is_decoded_from_the_hidden_state_at_k_minus_1(name):
    sllm = graft(BACKBONES[name](), tiny_vae(hidden=24)).eval()
    batch = paragraphs_batch(TEXTS)
    with torch.no_grad():
        out = sllm(**batch.as_model_inputs())
        for k in (1, 2):
            rows = batch.sentence_mask[:, k]
            ids, mask = batch.input_ids[rows, k], batch.token_mask[rows, k]

            def logprobs(position: int) -> torch.Tensor:
                vectors = sllm.sentence_vectors(out.hidden_states[rows, position])
                dec = sllm.vae.decode_loss(vectors, ids, mask)
                return dec.token_logprobs * dec.target_mask

            got = out.token_logprobs[rows, k, : mask.shape[1] + 1] * out.target_mask[rows, k, : mask.shape[1] + 1]
            torch.testing.assert_close(got, logprobs(k - 1), atol=1e-5, rtol=1e-5)
            assert (got - logprobs(k)).abs().max() > 1e-3  # the test can tell the positions apart


def _documents(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    subjects = ["The cat", "A dog", "My aunt", "The king", "Our team", "That bird"]
    verbs = ["sat", "ran", "sang", "slept", "won", "left"]
    return [" ".join(f"{rng.choice(subjects)} {rng.choice(verbs)}." for _ in range(rng.randint(2, 10))) for _ in range(n)]


def _train_termination(segmenter: RegexSegmenter, steps: int = 200):
    torch.manual_seed(0)
    tok = ByteTokenizer()
    sllm = graft(tiny_opt(), tiny_vae(), tokenizer=tok)
    docs = _documents(64)
    opt = torch.optim.AdamW([p for p in sllm.parameters() if p.requires_grad], lr=3e-3)
    for step in range(steps):
        batch = segment_and_tokenize(docs[(step * 8) % 64:(step * 8) % 64 + 8], tok, segmenter, pad_token_id=0)
        loss = sllm(**batch.as_model_inputs()).termination_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return sllm.eval()


PROMPTS = ["The cat sat.", "A dog ran.", "My aunt won."]


def test_continue_probability_does_not_depend_on_a_trailing_space():
    """A tiny SLLM trained through the public API: after one sentence every training document goes
    on, so P(continue) must be high whether or not the prompt ends in a space."""
    segmenter = RegexSegmenter(max_tokens=31, tokenizer=ByteTokenizer())
    sllm = _train_termination(segmenter)
    bare = sllm.continue_probability(PROMPTS, segmenter=segmenter)
    spaced = sllm.continue_probability([p + " " for p in PROMPTS], segmenter=segmenter)
    assert bool((bare > 0.5).all()), bare
    torch.testing.assert_close(bare, spaced)


def test_paper_whitespace_convention_teaches_the_space_cue():
    """The defect the default convention removes: with whitespace kept with the preceding segment,
    only a document's last segment lacks a trailing space, and the head learns exactly that."""
    segmenter = RegexSegmenter.paper(max_tokens=31, tokenizer=ByteTokenizer())
    sllm = _train_termination(segmenter)
    bare = sllm.continue_probability(PROMPTS, segmenter=segmenter)
    spaced = sllm.continue_probability([p + " " for p in PROMPTS], segmenter=segmenter)
    assert bool((spaced - bare > 0.3).all()), (bare, spaced)
