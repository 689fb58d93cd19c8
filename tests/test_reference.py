"""escnn's reference SE(3) model built literally from escnn modules (vol3d.models.reference):
the preset, its layout, invariance, export and checkpoints.

Every test shares one tiny model (``multiplicity=0.1``, built once per session by ``tiny_model``):
escnn's basis computations make each build take seconds.
"""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from vol3d.checkpoint import load_checkpoint, load_model, save_checkpoint
from vol3d.errors import UsageError
from vol3d.models import build_model, model_kwargs
from vol3d.models.export import export, export_torchscript
from vol3d.models.network import ConvBN
from vol3d.models.reference import MIN_SIZE, ReferenceNetwork
from vol3d.testing import relative_error, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model("so3", architecture="escnn_se3")


def rot90_cube_rotations(x):
    """The 24 rotations of the grid of ``x`` ``(B, C, X, Y, Z)``, as ``torch.rot90`` compositions:
    the x axis sent to each of the 6 directions, then the 4 turns about it."""
    directions = [x, x.rot90(1, (2, 3)), x.rot90(2, (2, 3)), x.rot90(3, (2, 3)), x.rot90(1, (2, 4)),
                  x.rot90(3, (2, 4))]
    return [d.rot90(k, (3, 4)) for d in directions for k in range(4)]


def test_preset_is_the_literal_model_and_large_so3_the_approximation():
    assert model_kwargs({"preset": "escnn_se3"}, num_classes=7) == dict(
        group="so3", architecture="escnn_se3", num_classes=7)
    approx = model_kwargs({"preset": "large_so3"})
    assert "architecture" not in approx and approx["widths"] == [96, 200, 480, 480, 960]
    assert model_kwargs({"preset": "escnn_se3", "multiplicity": 0.5})["multiplicity"] == 0.5
    with pytest.raises(UsageError, match="'widths'"):
        model_kwargs({"preset": "escnn_se3", "widths": [8]})
    with pytest.raises(UsageError, match="so3"):
        build_model("o3", architecture="escnn_se3")
    with pytest.raises(UsageError, match="'nope'"):
        build_model(architecture="nope")


def test_escnn_layout_and_widths():
    """At multiplicity 1 the layers have escnn's example widths (channels of each feature type)."""
    full = build_model(architecture="escnn_se3", num_classes=10)
    assert isinstance(full, ReferenceNetwork) and full.group == "so3" and full.in_channels == 1
    assert full.config == dict(architecture="escnn_se3", group="so3", num_classes=10, in_channels=1,
                               multiplicity=1.0, dropout=0.1, init="he")
    stem, *blocks, final, pool = full.body.module.children()
    assert [type(m).__name__ for m in (stem, *blocks, final, pool)] == (
        ["R3Conv"] + ["ResBlock"] * 4 + ["R3Conv", "QuotientFourierELU"])
    # 3 x poly_2 (13), then 2 / 6 / 12 / 8 x poly_3 (40)
    assert [stem.out_type.size] + [b.out_type.size for b in blocks] == [39, 80, 240, 480, 320]
    # Fourier ELU fields round(w / 96) for w = 200, 480, 480, 960, each 1 + 9 + 25 coefficients on 96 rotations
    elus = [b.branch[2] for b in blocks]
    assert [(len(e.in_type), e.A.shape) for e in elus] == [(n, (96, 35)) for n in (2, 5, 5, 10)]
    assert (final.kernel_size, final.padding, len(pool.in_type), pool.A.shape, pool.out_type.size) == (
        3, 0, 128, (24, 9), 128)
    linear = [m for m in full.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features, m.bias is not None) for m in linear] == [
        (128, 256, False), (256, 128, False), (128, 10, True)]


def test_invariant_to_the_24_rotations_on_an_odd_grid(model):
    x = torch.rand(1, 1, MIN_SIZE, MIN_SIZE, MIN_SIZE)
    rotated = rot90_cube_rotations(x)
    assert len({tuple(r.flatten()[:64].tolist()) for r in rotated}) == 24  # 24 distinct rotations
    with torch.no_grad():
        logits = model(torch.cat(rotated))
    assert relative_error(logits[:1].expand_as(logits), logits) < 1e-4


def test_small_grids_are_zero_padded_symmetrically(model):
    x = torch.rand(2, 1, 17, 17, 17)
    with torch.no_grad():
        assert torch.allclose(model(x), model(F.pad(x, [8] * 6)), rtol=1e-5, atol=1e-6)
        assert model(torch.rand(2, 1, 10, 12, 9)).shape == (2, 5)  # any shape: 34, 34, 33 after padding


def test_export_is_plain_and_equal(model, tmp_path):
    plain = export(model)
    assert not any(c.__module__.startswith("escnn") for m in plain.modules() for c in type(m).__mro__)
    unfolded = export(model, fold_batch_norms=False)  # each IIDBatchNorm3d a 1x1 convolution
    assert sum(isinstance(m, ConvBN) for m in unfolded.modules()) == 4
    x = torch.randn(2, 1, 20, 20, 20)
    with torch.no_grad():
        assert relative_error(model(x), plain(x)) < 1e-5
        assert relative_error(model(x), unfolded(x)) < 1e-5
        traced = torch.jit.trace(plain, x)
        assert relative_error(model(x), traced(x)) < 1e-5
    out = export_torchscript(model, tmp_path / "se3.pt", example_resolution=9)
    # a fresh interpreter that blocks vol3d and escnn imports
    code = ("import sys; sys.modules['escnn'] = None; sys.modules['vol3d'] = None; import torch; "
            f"m = torch.jit.load({str(out)!r}); print(tuple(m(torch.rand(1, 1, 9, 9, 9)).shape))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(1, 5)"


def test_checkpoint_round_trip(model, tmp_path):
    path = save_checkpoint(tmp_path / "se3.ckpt", model, list("abcde"))
    ckpt = load_checkpoint(path)  # torch.load(weights_only=True)
    assert ckpt["config"]["model"]["architecture"] == "escnn_se3"
    assert any("_basisexpansion" in k for k in ckpt["state_dict"])  # the sampled bases travel with it
    loaded = load_model(path)
    assert isinstance(loaded, ReferenceNetwork) and loaded.classes == list("abcde") and not loaded.training
    x = torch.randn(2, 1, 15, 15, 15)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_chunked_fourier_elu_equals_one_gemm():
    """Inference runs the channels-last Fourier ELU in row chunks; autograd runs one GEMM per product."""
    from vol3d.models.reference import ChannelsLastFourierELU

    torch.manual_seed(0)
    layer = ChannelsLastFourierELU(torch.randn(24, 9), torch.randn(1, 24), fields=3)
    layer.chunk_rows = 7  # many chunks, the last one partial
    x = torch.randn(2, 27, 5, 4, 3).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        chunked = layer(x)
    one_gemm = layer(x.requires_grad_())
    assert chunked.shape == (2, 3, 5, 4, 3)
    torch.testing.assert_close(chunked, one_gemm.detach())


def test_channels_first_fourier_elu_maps_to_fewer_coefficients():
    """vol3d's channels-first FourierELU (the dense limit's, in training) takes an ``Ainv`` with fewer
    rows than ``A`` has columns, as escnn's quotient ELU: per field ``Ainv elu(A f)``."""
    from vol3d.models.layers import FourierELU
    from vol3d.models.reference import ChannelsLastFourierELU

    torch.manual_seed(0)
    A, Ainv = torch.randn(24, 9), torch.randn(1, 24)
    x = torch.randn(2, 27, 5, 4, 3)
    expected = torch.einsum("ds,bfsxyz->bfdxyz", Ainv, F.elu(torch.einsum("sd,bfdxyz->bfsxyz", A, x.view(2, 3, 9, 5, 4, 3))))
    got = FourierELU(A, Ainv, fields=3)(x)
    assert got.shape == (2, 3, 5, 4, 3)
    torch.testing.assert_close(got, expected.reshape(2, 3, 5, 4, 3), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(ChannelsLastFourierELU(A, Ainv, fields=3)(x), got, rtol=1e-4, atol=1e-4)
