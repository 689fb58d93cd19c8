"""model option field_of_view: every layer sees only a ball about the grid centre
(:class:`vol3d.models.layers.BallMask3d`), so a model computes the same logits on any grid that
holds the ball, even where its receptive field reaches past the grid (which padding otherwise
changes), and the cube's rotations still act exactly."""

import math

import pytest
import torch
import torch.nn.functional as F

from vol3d.errors import UsageError
from vol3d.models import build_model
from vol3d.models.export import export
from vol3d.models.layers import BallMask3d
from vol3d.testing import gaussian_blobs, relative_error, tiny_model

N = 12  # test grid: blobs fill it, so 3^3 convolutions and the head's low-pass reach past its border
OPTIONS = dict(spatial_pool_blur=1.0, input_blur=0.8)


def _grid_filling_input() -> torch.Tensor:
    return gaussian_blobs(2, N, seed=3) * 3 + 0.5


def _pad(x: torch.Tensor, p: int) -> torch.Tensor:
    return F.pad(x, (p,) * 6)


def test_ball_mask_values():
    mask = BallMask3d(radius=4.0, taper=1.5)
    x = torch.ones(1, 2, 10, 10, 10)
    m = mask(x)[0, 0]
    t = torch.arange(10) - 4.5
    r = (t.view(-1, 1, 1) ** 2 + t.view(1, -1, 1) ** 2 + t.view(1, 1, -1) ** 2).sqrt()
    assert (m[r >= 4.0] == 0).all() and (m[r <= 2.5] == 1).all()
    ramp = (r > 2.5) & (r < 4.0)
    expect = torch.sin(0.5 * math.pi * (4.0 - r[ramp]) / 1.5) ** 2
    assert torch.allclose(m[ramp], expect, atol=1e-6)
    assert torch.equal(m, torch.rot90(m, 1, (0, 2))) and torch.equal(m, m.flip(1))  # a ball
    assert torch.equal(BallMask3d(0.0)(x), x)


@pytest.mark.parametrize("group,residual", [("so3", False), ("so3", True), ("cnn", False)])
def test_padding_changes_nothing_when_the_receptive_field_leaves_the_grid(group, residual):
    x = _grid_filling_input()
    with torch.no_grad():
        masked = tiny_model(group, field_of_view=N / 2, residual=residual, **OPTIONS)
        for pad in (2, 4):
            assert relative_error(masked(_pad(x, pad)), masked(x)) < 1e-5, pad
        # the control: the same model without a field of view meets the tails its grid cut off
        whole = tiny_model(group, residual=residual, **OPTIONS)
        assert relative_error(whole(_pad(x, 4)), whole(x)) > 1e-3


def test_field_of_view_keeps_cube_rotation_invariance_and_exports():
    model = tiny_model("so3", field_of_view=N / 2, **OPTIONS)
    x = _grid_filling_input()
    with torch.no_grad():
        y = model(x)
        assert relative_error(model(torch.rot90(x, 1, (2, 4))), y) < 1e-4
        assert relative_error(model(x.flip(2, 3)), y) < 1e-4  # a half turn about z
        plain = export(model).eval()
        assert relative_error(plain(x), y) < 1e-5
        assert relative_error(torch.jit.script(plain)(_pad(x, 2)), y) < 1e-5  # any grid size


def test_field_of_view_adds_no_state_dict_keys():
    """Masks have no parameters or buffers: the weights of a model without one keep their names."""
    torch.manual_seed(0)
    with_fov = build_model("so3", num_classes=3, widths=[8, 16], field_of_view=6, residual=True)
    without = build_model("so3", num_classes=3, widths=[8, 16], residual=True)
    assert with_fov.state_dict().keys() == without.state_dict().keys()
    assert sum(isinstance(m, BallMask3d) for m in with_fov.modules()) >= 4


@pytest.mark.parametrize("bad", [0, -3, "12", True])
def test_field_of_view_is_validated(bad):
    with pytest.raises(UsageError, match="field_of_view"):
        build_model("cnn", num_classes=3, widths=[8, 16], field_of_view=bad)
