"""The SentenceLLM follows transformers/peft conventions: ModelOutput, LoRA in peft's own format
(and the old layout still loads), atomic saves, a model card, generate(..., streamer=)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

import graftlm
import graftlm.sllm.io as sllm_io
from graftlm import graft
from graftlm.tokenization import ByteTokenizer

from fixtures.tiny_models import TEXTS, one_thread, paragraphs_batch, tiny_llama, tiny_opt, tiny_vae  # noqa: F401

FIXED = dict(ignore_stop=True, ignore_eos=True, max_tokens_per_sentence=4, max_new_sentences=3)


def _lora_sllm(tmp_path):
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    tiny_llama().save_pretrained(tmp_path / "backbone")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "backbone")
    sllm = graft(model, tiny_vae(), tokenizer=ByteTokenizer(), lora=LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # LoRA's B starts at 0: give it weights that change the output
        for name, p in sllm.body.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    return sllm.eval()


def _loss(sllm) -> torch.Tensor:
    with torch.no_grad():
        return sllm(**paragraphs_batch(TEXTS).as_model_inputs()).loss


def test_outputs_index_like_transformers_outputs():
    out = graft(tiny_opt(), tiny_vae(), tokenizer=ByteTokenizer())(**paragraphs_batch(TEXTS).as_model_inputs())
    assert out["loss"] is out.loss and out[0] is out.loss and out[1] is out.decoder_loss
    assert "distillation_loss" not in out  # None fields are not keys, as in transformers


def test_lora_is_saved_in_peft_format_that_peft_reads(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    sllm = _lora_sllm(tmp_path)
    sllm.save_pretrained(tmp_path / "sllm")
    assert (tmp_path / "sllm" / "adapter_config.json").is_file()
    fresh = AutoModelForCausalLM.from_pretrained(tmp_path / "backbone")
    peft_model = PeftModel.from_pretrained(fresh, tmp_path / "sllm")
    ours = {n: p for n, p in sllm.body.named_parameters() if "lora_" in n}
    theirs = {n: p for n, p in peft_model.named_parameters() if "lora_" in n}
    assert len(theirs) == len(ours) == 8  # 2 layers × (q, v) × (A, B)
    for name, p in ours.items():
        match = [q for n, q in theirs.items() if n.endswith("model." + name)]
        assert len(match) == 1 and torch.equal(match[0], p), name


def test_lora_round_trip_through_peft_files(tmp_path):
    sllm = _lora_sllm(tmp_path)
    sllm.save_pretrained(tmp_path / "sllm")
    loaded = graftlm.load(tmp_path / "sllm").eval()
    assert torch.equal(_loss(loaded), _loss(sllm))


def test_the_old_layout_with_lora_inside_sllm_safetensors_still_loads(tmp_path):
    sllm = _lora_sllm(tmp_path)
    sllm.save_pretrained(tmp_path / "sllm")
    folder = tmp_path / "sllm"
    state = load_file(str(folder / "sllm.safetensors"))
    state.update({n: p.detach().contiguous() for n, p in sllm.state_dict().items() if ".lora_" in n})
    save_file(state, str(folder / "sllm.safetensors"), metadata={"format": "graftlm-sentence-llm"})
    (folder / "adapter_model.safetensors").unlink()
    (folder / "adapter_config.json").unlink()
    assert torch.equal(_loss(graftlm.load(folder).eval()), _loss(sllm))


def test_lora_weights_missing_everywhere_are_refused(tmp_path):
    sllm = _lora_sllm(tmp_path)
    sllm.save_pretrained(tmp_path / "sllm")
    (tmp_path / "sllm" / "adapter_model.safetensors").unlink()
    with pytest.raises(ValueError, match="saved with LoRA, but neither adapter_model.safetensors"):
        graftlm.load(tmp_path / "sllm")


def test_interrupted_save_keeps_the_earlier_model(tmp_path, monkeypatch):
    first = graft(tiny_opt(), tiny_vae(), tokenizer=ByteTokenizer()).eval()
    first.save_pretrained(tmp_path / "m", save_backbone="weights")
    expected = _loss(first)
    second = graft(tiny_opt(seed=5), tiny_vae(seed=6), tokenizer=ByteTokenizer()).eval()

    def fail(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 100)  # part of a file, then the process is gone
        raise KeyboardInterrupt

    monkeypatch.setattr(sllm_io, "save_file", fail)
    with pytest.raises(KeyboardInterrupt):
        second.save_pretrained(tmp_path / "m", save_backbone="weights")
    assert torch.equal(_loss(graftlm.load(tmp_path / "m").eval()), expected)


def test_model_card_names_backbone_and_lora(tmp_path):
    sllm = _lora_sllm(tmp_path)
    sllm.save_pretrained(tmp_path / "sllm", model_card={"evaluation": {"perplexity": 12.5}})
    card = (tmp_path / "sllm" / "README.md").read_text()
    assert f"base_model: {tmp_path / 'backbone'}" in card
    assert "rank 2" in card and "| perplexity | 12.5 |" in card


class Recorder:
    def __init__(self):
        self.calls = []

    def put(self, value):
        self.calls.append(("put", value.tolist()))

    def end(self):
        self.calls.append(("end", None))


def test_streamer_gets_the_prompt_then_each_sentence_then_end():
    sllm = graft(tiny_opt(), tiny_vae(), tokenizer=ByteTokenizer()).eval()
    recorder = Recorder()
    out = sllm.generate(TEXTS[1], return_dict=True, streamer=recorder, **FIXED)
    prompt = paragraphs_batch([TEXTS[1]])
    assert recorder.calls[0] == ("put", prompt.input_ids[0][prompt.token_mask[0]].tolist())
    assert recorder.calls[1:] == [("put", ids) for ids in out.token_ids[0]] + [("end", None)]
    assert len(out.token_ids[0]) == 3


def test_text_iterator_streamer_yields_the_generated_text():
    from transformers import TextIteratorStreamer

    sllm = graft(tiny_opt(), tiny_vae(), tokenizer=ByteTokenizer()).eval()
    streamer = TextIteratorStreamer(ByteTokenizer(), skip_prompt=True)
    text = sllm.generate(TEXTS[0], streamer=streamer, **FIXED)[0]
    assert "".join(streamer) == text


def test_streamer_with_several_prompts_is_refused():
    sllm = graft(tiny_opt(), tiny_vae(), tokenizer=ByteTokenizer()).eval()
    with pytest.raises(ValueError, match="batch size 1"):
        sllm.generate(TEXTS[:2], streamer=Recorder(), **FIXED)
