"""The checkpoint format: save in train or eval mode, load both; clear errors on foreign files."""

import pytest
import torch

import vol3d
from vol3d.checkpoint import load_checkpoint, load_model, save_checkpoint
from vol3d.errors import FormatError, UsageError
from vol3d.testing import gaussian_blobs, tiny_model


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_roundtrip_from_either_mode(tmp_path, mode):
    model = tiny_model("so3")
    x = gaussian_blobs(2, 11)
    with torch.no_grad():
        expected = model(x)
    model.train(mode == "train")
    try:
        path = save_checkpoint(tmp_path / "m.ckpt", model, list("abcde"), config={"seed": 3},
                               training={"epoch": 4, "rng": torch.get_rng_state()})
    finally:
        model.eval()
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["classes"] == list("abcde") and ckpt["vol3d_version"] == vol3d.__version__
    assert ckpt["config"]["seed"] == 3 and ckpt["config"]["model"]["group"] == "so3"
    assert ckpt["training"]["epoch"] == 4
    assert not any(k.endswith(".filter") for k in ckpt["state_dict"])
    assert any("_basisexpansion" in k for k in ckpt["state_dict"])  # the checkpoint carries its basis
    loaded = load_model(path)
    assert not loaded.training and loaded.classes == list("abcde")
    with torch.no_grad():
        assert torch.allclose(loaded(x), expected, atol=1e-6)


def test_sparse_bases_are_stored_losslessly_and_checked_on_load(tmp_path):
    """escnn's sampled bases are mostly zeros: the checkpoint stores them flattened and sparse."""
    from vol3d.checkpoint import basis_keys, model_state

    model = tiny_model("so3")
    own, state = model.state_dict(), model_state(model)
    bases = basis_keys(model)
    sparse = [k for k in bases if state[k].is_sparse]
    assert sparse, "no basis was stored sparse"
    for key in bases:
        stored = state[key].to_dense() if state[key].is_sparse else state[key]
        assert torch.equal(stored.reshape(own[key].shape), own[key]), key
    assert not any(state[k].is_sparse for k in state if k not in bases)  # weights stay dense
    path = save_checkpoint(tmp_path / "m.ckpt", model, list("abcde"))
    ckpt = torch.load(path, weights_only=True)
    key = sparse[0]
    ckpt["state_dict"][key] = torch.zeros(ckpt["state_dict"][key].numel() + 1).to_sparse()
    torch.save(ckpt, tmp_path / "resized.ckpt")
    with pytest.raises(FormatError, match=r"resized\.ckpt.*entries"):
        load_model(tmp_path / "resized.ckpt")


def test_raw_eval_state_dict_loads_into_train_model():
    from vol3d.checkpoint import load_model_state
    from vol3d.models import build_model
    from vol3d.testing import TINY

    model = tiny_model("octa")
    fresh = build_model("octa", 5, **TINY)
    load_model_state(fresh, model.state_dict())  # eval-mode dict with the filter buffers
    fresh.eval()
    x = gaussian_blobs(2, 9)
    with torch.no_grad():
        assert torch.allclose(fresh(x), model(x), atol=1e-6)


def test_foreign_files_are_format_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(FormatError, match="notes.txt"):
        load_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(FormatError, match="other.pt.*format"):
        load_model(other)
    good = save_checkpoint(tmp_path / "g.ckpt", tiny_model("cnn"), list("abcde"))
    ckpt = torch.load(good, weights_only=True)
    del ckpt["state_dict"]
    torch.save(ckpt, tmp_path / "nostate.ckpt")
    with pytest.raises(FormatError, match="nostate.ckpt.*'state_dict'"):
        load_model(tmp_path / "nostate.ckpt")
    ckpt = torch.load(good, weights_only=True)
    ckpt["state_dict"].pop(next(iter(ckpt["state_dict"])))
    torch.save(ckpt, tmp_path / "partial.ckpt")
    with pytest.raises(FormatError, match="partial.ckpt.*missing key"):
        load_model(tmp_path / "partial.ckpt")


def test_class_count_must_match(tmp_path):
    with pytest.raises(UsageError, match="5 outputs but 2"):
        save_checkpoint(tmp_path / "x.ckpt", tiny_model("cnn"), ["a", "b"])
    assert not list(tmp_path.iterdir())


def test_checkpoint_restores_its_own_basis_on_another_escnn_set_up(tmp_path):
    """escnn's sampled basis depends on its set-up (py3nj or not, its cache); a checkpoint must
    reproduce the trained model wherever it is loaded. Simulate another set-up by flipping the
    sign of the bases in escnn's global cache, from which new models copy theirs."""
    from escnn.nn.modules.basismanager import basisexpansion_singleblock as single

    model = tiny_model("so3")
    x = gaussian_blobs(2, 11)
    with torch.no_grad():
        expected = model(x)
    path = save_checkpoint(tmp_path / "m.ckpt", model, list("abcde"))
    flipped = [b for b in single._stored_filters.values() if hasattr(b, "sampled_basis")]
    assert flipped
    try:
        for block in flipped:
            block.sampled_basis.neg_()
        ckpt = torch.load(path, weights_only=True)
        with torch.no_grad():
            assert torch.allclose(load_model(path)(x), expected, atol=1e-6)
            without_basis = {k: v for k, v in ckpt["state_dict"].items() if "_basisexpansion" not in k}
            stale = load_model({**ckpt, "state_dict": without_basis})(x)
        assert not torch.allclose(stale, expected, atol=1e-3)  # what loading without the basis gives
    finally:
        for block in flipped:
            block.sampled_basis.neg_()
