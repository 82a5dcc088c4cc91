"""Reading the authors' .pth files: nothing in them runs (restricted unpickler), full mmengine
training checkpoints load, and every bad file gets an error that names the file and its keys."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import torch

from graftlm.vae import SentenceVAE
from graftlm.vae.safe_pickle import Inert, read_tensors

from fixtures.tiny_models import one_thread  # noqa: F401

DIR = Path(__file__).parent / "fixtures" / "official"
META = json.loads((DIR / "fixtures.json").read_text())
SUM = {**META["svae"], "learnable_add": False}


class Payload:
    """Unpickling this calls builtins.open(marker, "w"): a file appears if the pickle runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


def their_state() -> dict[str, torch.Tensor]:
    return read_tensors(DIR / "svae_sum_state_dict.pth")[0]


def test_a_payload_in_the_file_does_not_run(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"state_dict": their_state(), "message_hub": Payload(marker)}, tmp_path / "evil.pth")
    torch.load(tmp_path / "evil.pth", weights_only=False)  # our own file: proves the payload is live
    assert marker.exists()
    marker.unlink()
    model = SentenceVAE.from_official(tmp_path / "evil.pth", SUM)
    assert not marker.exists()
    assert torch.equal(model.decoder.lm_head.bias, their_state()["decoder.linear.bias"])


def test_full_mmengine_training_checkpoint_is_read_without_its_objects():
    """iter_4.pth from a real Runner: weights_only=True refuses it (mmengine/numpy objects)."""
    with pytest.raises(Exception):
        torch.load(DIR / "svae_la_proj_iter_4.pth", weights_only=True)
    tensors, skipped = read_tensors(DIR / "svae_la_proj_iter_4.pth")
    assert "mmengine.logging.history_buffer.HistoryBuffer" in skipped
    assert {"state_dict", "ema_state_dict", "optimizer"} <= set(tensors)
    assert all(isinstance(v, torch.Tensor) for v in tensors["state_dict"].values())


def test_placeholders_are_inert():
    obj = type("X", (Inert,), {"_graftlm_global": "os.system"})("rm -rf /")
    obj.__setstate__({"a": 1})
    assert isinstance(obj("anything"), Inert) and "os.system" in repr(obj)


def test_empty_file(tmp_path):
    (tmp_path / "e.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=r"e\.pth is empty"):
        SentenceVAE.from_official(tmp_path / "e.pth", SUM)


def test_truncated_file(tmp_path):
    data = (DIR / "svae_sum_state_dict.pth").read_bytes()
    (tmp_path / "t.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"t\.pth .*not a PyTorch checkpoint.*truncated"):
        SentenceVAE.from_official(tmp_path / "t.pth", SUM)


def test_text_file(tmp_path):
    (tmp_path / "x.pth").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(ValueError, match=r"x\.pth .*starts b'version.*not a PyTorch checkpoint"):
        SentenceVAE.from_official(tmp_path / "x.pth", SUM)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint file at"):
        SentenceVAE.from_official(tmp_path / "nope.pth", SUM)


def test_missing_key_is_named_as_in_the_file(tmp_path):
    state = their_state()
    del state["decoder.linear.bias"], state["decoder.decoder.layers.1.multihead_attn.in_proj_weight"]
    torch.save(state, tmp_path / "m.pth")
    with pytest.raises(ValueError, match=r"missing keys: decoder\.decoder\.layers\.1\.multihead_attn\.in_proj_weight, decoder\.linear\.bias"):
        SentenceVAE.from_official(tmp_path / "m.pth", SUM)


def test_misshapen_and_unexpected_keys_are_named_as_in_the_file(tmp_path):
    state = their_state()
    state["decoder.linear.weight"] = torch.zeros(40, 16)
    state["encoder.la.weight"] = torch.zeros(1, 16)
    torch.save({"meta": {}, "state_dict": state}, tmp_path / "s.pth")
    with pytest.raises(ValueError, match=r"unexpected keys: encoder\.la\.weight \| wrong shapes: decoder\.linear\.weight: file \(40, 16\) vs config \(48, 16\)"):
        SentenceVAE.from_official(tmp_path / "s.pth", SUM)


def test_wrong_layer_count_names_the_extra_layers(tmp_path):
    with pytest.raises(ValueError, match=r"unexpected keys: decoder\.decoder\.layers\.1\."):
        SentenceVAE.from_official(DIR / "svae_sum_state_dict.pth", {**SUM, "num_hidden_layers": 1})


def test_a_file_without_weights_names_its_keys(tmp_path):
    torch.save({"meta": {"iter": 3}, "note": "hello"}, tmp_path / "n.pth")
    with pytest.raises(ValueError, match=r"holds no tensors under state_dict; top-level keys: meta, note"):
        SentenceVAE.from_official(tmp_path / "n.pth", SUM)
