"""Zero-preserving models: logits do not depend on how much empty space surrounds the object.

Rotated evaluation zero-pads volumes so that no voxel leaves the grid; a model whose background
features are nonzero (mean-subtracting batch norms) or whose pooling averages over space changes
its prediction when padded. With ``norm: rms`` and ``spatial_pool: max`` (with or without the
head's low-pass) padding is harmless."""

import pytest
import torch
import torch.nn.functional as F

from vol3d.models import MODEL_GROUPS, build_model
from vol3d.models.export import export
from vol3d.models.layers import FieldNorm3d, GaussianBlur3d
from vol3d.testing import polycube_volume, relative_error, tiny_model

PIECE = [(0, 0, 0), (1, 0, 0), (2, 0, 0), (1, 1, 0), (1, 1, 1)]
#: three stages (two downsamplings): exercises the canonical padding of Network; no blur keeps the
#: receptive field inside the test grid (features truncated by the grid border differ once padded)
THREE_STAGES = dict(widths=(24, 48, 48), kernel_sizes=(3, 3, 3), sigma=0.0)


def _object_of(cubes, resolution: int = 16) -> torch.Tensor:
    """A polycube centred in a ``resolution^3`` grid with empty space around it: (1, 1, R, R, R)."""
    return polycube_volume(cubes, resolution, scale=2).view(1, 1, resolution, resolution, resolution)


def _object(resolution: int = 16) -> torch.Tensor:
    return _object_of(PIECE, resolution)


def _pad(x: torch.Tensor, p: int) -> torch.Tensor:
    return F.pad(x, (p,) * 6)


@pytest.mark.parametrize("group", MODEL_GROUPS)
@pytest.mark.parametrize("stages", [2, 3])
def test_zero_padding_does_not_change_the_logits(group, stages):
    model = tiny_model(group, **(THREE_STAGES if stages == 3 else {}))
    _assert_padding_invariant(model, stages)


@pytest.mark.parametrize("group", ["cnn", "so3"])
def test_zero_padding_does_not_change_the_logits_with_the_heads_low_pass(group):
    _assert_padding_invariant(tiny_model(group, spatial_pool_blur=1.0), 2)


def _assert_padding_invariant(model, stages):
    x = _object(16 if stages == 2 else 20)  # with background left at the last stage (max pooling sees zeros)
    with torch.no_grad():
        ref = model(x)
        for pad in (1, 2, 3):  # 18^3, 20^3, 22^3: other stage parities without the canonical padding
            assert relative_error(model(_pad(x, pad)), ref) < 1e-5, pad


@pytest.mark.parametrize("group", ["cnn", "so3"])
def test_legacy_batch_norm_and_mean_pooling_are_not_padding_invariant(group):
    """The test above could fail: the models built before (mean-subtracting batch norm, mean pooling)."""
    model = tiny_model(group, norm="batch", spatial_pool="mean", **THREE_STAGES)
    x = _object()
    with torch.no_grad():
        assert relative_error(model(_pad(x, 2)), model(x)) > 1e-3


def test_canonical_padding_keeps_stage_parities():
    model = tiny_model("cnn", **THREE_STAGES)
    assert model.size_multiple == 8  # 2^(downsamplings + 1): the parities of N and every ceil(N / 2^i)
    sizes = {n: tuple(model._canonical_pad(torch.zeros(1, 1, n, n + 1, n + 2)).shape[2:]) for n in (15, 16, 18)}
    assert sizes == {15: (17, 16, 17), 16: (16, 17, 24), 18: (24, 25, 24)}
    assert tiny_model("cnn", norm="batch", **THREE_STAGES).size_multiple == 1  # old models unchanged


def test_field_norm_is_a_zero_preserving_per_field_scaling():
    norm = FieldNorm3d([3, 1, 2])
    x = torch.randn(4, 6, 5, 5, 5)
    x[..., :2] = 0
    y = norm(x)  # training mode: batch statistics
    sq = x.square().mean(dim=(0, 2, 3, 4))
    fields = torch.stack([sq[:3].sum(), sq[3], sq[4:].sum()])
    expect = x * torch.rsqrt(fields + norm.eps).repeat_interleave(torch.tensor([3, 1, 2])).view(1, -1, 1, 1, 1)
    assert torch.allclose(y, expect, atol=1e-6)
    assert (y[..., :2] == 0).all()
    assert torch.allclose(norm.running_sq, 0.9 + 0.1 * fields)
    norm.eval()
    rot = torch.linalg.qr(torch.randn(3, 3))[0]  # an orthogonal action on the first field commutes
    xr = x.clone()
    xr[:, :3] = torch.einsum("ij,bj...->bi...", rot, x[:, :3])
    yr = norm(xr)
    assert torch.allclose(yr[:, :3], torch.einsum("ij,bj...->bi...", rot, norm(x)[:, :3]), atol=1e-5)


@pytest.mark.parametrize("group", ["cnn", "so3"])
def test_export_folds_the_field_norm(group):
    model = tiny_model(group, **THREE_STAGES)
    x = _pad(_object(), 3)
    plain = export(model)
    assert not any(isinstance(m, FieldNorm3d) for m in plain.modules())
    with torch.no_grad():
        assert (plain(x) - model(x)).abs().max() < 1e-5


def test_a_model_trained_at_one_padding_classifies_at_another():
    torch.manual_seed(0)
    pieces = [PIECE, [(0, 0, 0), (1, 0, 0), (2, 0, 0), (3, 0, 0)], [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)]]
    x = torch.cat([_object_of(p, 20) for p in pieces])
    y = torch.arange(len(pieces))
    model = build_model("cnn", num_classes=len(pieces), pool_features=8, head=(8,), dropout=0.0,
                        **{**THREE_STAGES, "widths": (8, 16, 16)})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(40):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).all()
        for p in (1, 2, 4):
            logits = model(_pad(x, p))
            assert (logits.argmax(1) == y).all(), p
            assert relative_error(logits, model(x)) < 1e-5


def test_margin_and_input_blur_keep_invariance_and_export():
    """model options margin / input_blur: cube-rotation invariance holds, the export is equal, and a
    blurred input only reaches ceil(3 sigma) voxels further (so the margin holds it)."""
    torch.manual_seed(0)
    model = build_model(group="so3", num_classes=3, widths=[8, 16], margin=3, input_blur=0.8).eval()
    x = torch.rand(2, 1, 11, 11, 11)
    with torch.no_grad():
        y = model(x)
        assert relative_error(y, model(torch.rot90(x, 1, (2, 4)))) < 1e-4
        assert relative_error(y, export(model).eval()(x)) < 1e-5
    point = torch.zeros(1, 1, 9, 9, 9)
    point[0, 0, 4, 4, 4] = 1.0
    blurred = GaussianBlur3d(0.8)(point)
    assert blurred.sum().item() == pytest.approx(1.0, rel=1e-5)  # mass kept, nothing cut off
    assert blurred[0, 0, 4 - 3, 4, 4] > 0 and blurred[0, 0, 0, 4, 4] == 0  # reach: ceil(3 * 0.8) = 3
