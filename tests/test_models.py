"""Steerable models: shapes, options, and numerical invariance for every group (tiny models)."""

import numpy as np
import pytest
import torch

from vol3d.errors import UsageError
from vol3d.models import MODEL_GROUPS, PRESETS, build_model, count_macs, count_parameters, grid_symmetries
from vol3d.models import model_from_config, model_kwargs
from vol3d.models.layers import GaussianBlur3d
from vol3d.rotations import cube_rotations, cube_symmetries, rotation_about_z, sample_rotations
from vol3d.testing import (CHIRAL_PIECES, TINY, gaussian_blobs, invariance_error, normalized_invariance_error,
                           polycube_volume, relative_error, tiny_model)

TOL = 1e-4
STEERABLE = [g for g in MODEL_GROUPS if g != "cnn"]


@pytest.mark.parametrize("group", STEERABLE)
@pytest.mark.parametrize("size", [15, 16])
def test_invariant_to_grid_symmetries_of_group(group, size):
    model = tiny_model(group)
    x = torch.rand(2, 1, size, size, size)
    syms = grid_symmetries(group)
    assert invariance_error(model, x, syms) < TOL


def test_grid_symmetry_counts():
    counts = {g: len(grid_symmetries(g)) for g in MODEL_GROUPS}
    assert counts == {"so3": 24, "o3": 48, "octa": 24, "full_octa": 48, "ico": 12, "so2": 4, "cnn": 1}
    # so2's symmetries are the turns about vol3d's vertical axis z
    assert np.allclose(grid_symmetries("so2")[:, 2], [0, 0, 1])


@pytest.mark.parametrize("group", ["so3", "octa", "ico", "so2"])
def test_rotation_only_groups_see_reflections(group):
    """Groups without reflections are not invariant to them (the test above could fail)."""
    model = tiny_model(group)
    x = gaussian_blobs(4, 15, seed=1)
    # in-group errors are ~1e-6 on this scale
    assert normalized_invariance_error(model, x, cube_symmetries()[24:]) > 1e-4


def test_so2_is_not_invariant_to_tilts():
    x = gaussian_blobs(4, 15, seed=2)
    tilts = [m for m in cube_rotations() if m[2, 2] != 1]
    assert normalized_invariance_error(tiny_model("so2"), x, tilts) > 1e-3


@pytest.mark.parametrize("size", [15, 16])
def test_cnn_is_not_invariant(size):
    x = gaussian_blobs(4, size, seed=3)
    assert normalized_invariance_error(tiny_model("cnn"), x, cube_rotations()[1:]) > 1e-2


@pytest.mark.parametrize("nonlinearity", ["gated", "norm"])
def test_other_nonlinearities_invariant(nonlinearity):
    model = tiny_model("so3", nonlinearity=nonlinearity)
    x = torch.rand(2, 1, 14, 14, 14)
    assert invariance_error(model, x, cube_rotations()) < TOL


def _fibre_equivariance_error(act, rho, elements, fields, gates=0):
    """Largest :func:`relative_error` of ``act(rho(g) x)`` against ``rho(g) act(x)`` over
    ``elements``, ``x`` a random ``(2, fields * D + gates, 1, 1, 1)`` tensor whose last ``gates``
    channels are invariant."""
    torch.manual_seed(0)
    n = fields * rho.size
    x = torch.randn(2, n + gates, 1, 1, 1)
    worst = 0.0
    with torch.no_grad():
        y = act(x)
        for g in elements:
            m = torch.block_diag(*[torch.as_tensor(rho(g), dtype=torch.float32)] * fields)
            turn = lambda t: torch.cat([torch.einsum("ij,bjxyz->bixyz", m, t[:, :n]), t[:, n:]], 1)
            worst = max(worst, relative_error(turn(y), act(turn(x))))
    return worst


def test_nonlinearities_on_the_fibre():
    """Gated and norm nonlinearities commute with every rotation of a field; the Fourier ELU with
    the cube's rotations (its default grid) and only approximately with others."""
    from vol3d.models import groups as G
    from vol3d.models.layers import FourierELU, GatedELU, NormELU

    rho, layout = G.spectral_representation("so3", 1), G.irrep_layout("so3", 1)
    so3 = G.gspace("so3", 1).fibergroup
    random_elements = [so3.sample() for _ in range(5)]
    gated = GatedELU(layout, 3)
    assert _fibre_equivariance_error(gated, rho, random_elements, 3, gates=gated.gates) < 1e-5
    assert _fibre_equivariance_error(NormELU(layout, 3), rho, random_elements, 3) < 1e-5
    A, Ainv = G.fourier_matrices("so3", 1, None)
    fourier = FourierELU(torch.from_numpy(A), torch.from_numpy(Ainv), 3)
    cube = [so3.element(r, "MAT") for r in cube_rotations()]
    assert _fibre_equivariance_error(fourier, rho, cube, 3) < 1e-5
    assert _fibre_equivariance_error(fourier, rho, random_elements, 3) > 1e-2


def test_kernel_max_frequency_drops_basis_elements_and_keeps_invariance():
    """Capping the kernel basis at j <= 1 leaves fewer weights, the same exact cube invariance, and
    a config that rebuilds the same model."""
    opts = dict(kernel_sizes=(5, 3), nonlinearity="gated")
    capped = tiny_model("so3", kernel_max_frequency=1, **opts)
    assert count_parameters(capped) < count_parameters(tiny_model("so3", **opts))
    assert invariance_error(capped, torch.rand(2, 1, 14, 14, 14), cube_rotations()) < TOL
    rebuilt = model_from_config(capped.config)
    assert rebuilt.config["kernel_max_frequency"] == 1
    assert count_parameters(rebuilt) == count_parameters(capped)


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_kernel_max_frequency_validated(value):
    with pytest.raises(UsageError, match="kernel_max_frequency"):
        build_model("so3", 2, kernel_max_frequency=value)


def test_kernel_max_frequency_not_for_cnn():
    with pytest.raises(UsageError, match="kernel_max_frequency.*cnn"):
        build_model("cnn", 2, kernel_max_frequency=1)


def test_spatial_pool_blur_low_passes_the_maps_before_the_max():
    """The head's low-pass: the same weights give other logits, still exactly cube-invariant, and
    the config rebuilds it; its logits are the max of the Gaussian-filtered maps."""
    plain = tiny_model("so3", nonlinearity="gated")
    blurred = build_model("so3", 5, **{**TINY, "nonlinearity": "gated", "spatial_pool_blur": 1.0}).eval()
    blurred.load_state_dict(plain.state_dict())  # the low-pass has no weights
    x = torch.rand(2, 1, 14, 14, 14)
    with torch.no_grad():
        assert relative_error(blurred(x), plain(x)) > 1e-3
        maps = plain.feature_maps(x)
        expected = plain.head.mlp(GaussianBlur3d(1.0)(maps).amax(dim=(2, 3, 4)))
        assert relative_error(blurred(x), expected) < 1e-5
    assert invariance_error(blurred, x, cube_rotations()) < TOL
    assert model_from_config(blurred.config).head.blur.sigma == 1.0


@pytest.mark.parametrize("value", [-0.5, True, "1"])
def test_spatial_pool_blur_validated(value):
    with pytest.raises(UsageError, match="spatial_pool_blur"):
        build_model("so3", 2, spatial_pool_blur=value)


def test_residual_invariant_odd_grid():
    model = tiny_model("octa", residual=True, blocks=2)
    assert invariance_error(model, torch.rand(2, 1, 13, 13, 13), cube_rotations()) < TOL


def test_continuous_rotations_so3_well_below_cnn():
    x = gaussian_blobs(6, 17, sigma=2.0)
    rots = sample_rotations(6, "so3", rng=0)
    so3 = normalized_invariance_error(tiny_model("so3"), x, rots)
    cnn = normalized_invariance_error(tiny_model("cnn"), x, rots)
    assert so3 < 0.5 * cnn


def test_so2_continuous_z_rotations_below_cnn():
    x = gaussian_blobs(6, 17, sigma=2.0)
    rots = rotation_about_z(np.linspace(0.3, 5.9, 5))
    assert normalized_invariance_error(tiny_model("so2"), x, rots) < 0.5 * normalized_invariance_error(
        tiny_model("cnn"), x, rots)


def test_chirality_so3_separates_o3_merges():
    left = polycube_volume(CHIRAL_PIECES["chiral_left"], 16)
    right = polycube_volume(CHIRAL_PIECES["chiral_right"], 16)
    tee = polycube_volume([(0, 0, 0), (1, 0, 0), (2, 0, 0), (1, 1, 0)], 16)
    assert torch.equal(right, left.flip(2))  # mirror images on the grid
    assert not any(torch.equal(torch.rot90(left, 1, d), right) for d in [(2, 3), (3, 4), (2, 4)])
    with torch.no_grad():
        out = {g: [tiny_model(g)(v) for v in (left, right, tee)] for g in ("so3", "o3")}
    # distances relative to how far a different piece (the T) lands
    a, b, t = out["so3"]
    assert (a - b).norm() > 1e-2 * (a - t).norm()
    a, b, t = out["o3"]
    assert (a - t).norm() > 0
    assert (a - b).norm() < 1e-3 * (a - t).norm()


@pytest.mark.parametrize("L", [1, 2])
def test_invariant_pool_is_exactly_invariant_and_det_is_a_pseudoscalar(L):
    """InvariantPool: unchanged by any rotation of its fields; a reflection (l = 1 parts negated,
    l = 0 and l = 2 kept) flips the sign of det M_1 and nothing else."""
    from vol3d.models import groups as G
    from vol3d.models.layers import InvariantPool

    layout = G.irrep_layout("so3", L)
    pool = InvariantPool(layout, fields=3)
    rho = G.spectral_representation("so3", L)
    group = G.gspace("so3", L).fibergroup
    x = torch.randn(2, 3, rho.size, 4, dtype=torch.float64)
    y = pool(x.reshape(2, -1, 4, 1, 1))
    assert y.shape == (2, 3 * pool.invariants, 4, 1, 1) and pool.has_det
    for _ in range(3):
        r = torch.from_numpy(rho(group.sample()))
        turned = torch.einsum("ij,bfjv->bfiv", r, x).reshape(2, -1, 4, 1, 1)
        assert (pool(turned) - y).abs().max() < 1e-10
    mirror = x.clone()
    for start, size, _ in layout:
        if size == 3:
            mirror[:, :, start:start + 3] *= -1
    flipped = pool(mirror.reshape(2, -1, 4, 1, 1)).view(2, 3, pool.invariants, 4)
    y = y.view(2, 3, pool.invariants, 4)
    det = pool.invariants - 1  # the last invariant of each field
    assert torch.allclose(flipped[:, :, :det], y[:, :, :det]) and (y[:, :, det].abs() > 0).all()
    assert torch.allclose(flipped[:, :, det], -y[:, :, det])


def test_invariant_pooling_model_is_invariant_and_tells_mirror_images_apart():
    """pool='invariants': exact on the grid's rotations, and far more sensitive to chirality than
    group pooling (whose pseudo-scalar information enters only at third order)."""
    x = torch.rand(2, 1, 15, 15, 15)
    model = tiny_model("so3", pool="invariants")
    assert invariance_error(model, x, cube_rotations()) < TOL
    left = polycube_volume(CHIRAL_PIECES["chiral_left"], 16)
    right = polycube_volume(CHIRAL_PIECES["chiral_right"], 16)
    tee = polycube_volume([(0, 0, 0), (1, 0, 0), (2, 0, 0), (1, 1, 0)], 16)

    def chirality(m):
        features = [m.feature_maps(v).amax((2, 3, 4))
                    for v in (left, right, tee)]
        a, b, t = features
        return float((a - b).norm() / (a - t).norm())

    with torch.no_grad():  # averaged over three initializations, 32 invariant features each
        invariants = np.mean([chirality(tiny_model("so3", s, pool="invariants", pool_features=32)) for s in range(3)])
        group = np.mean([chirality(tiny_model("so3", s, pool_features=32)) for s in range(3)])
    assert invariants > 3 * group


@pytest.mark.parametrize("group", MODEL_GROUPS)
def test_shapes_any_grid(group):
    model = tiny_model(group)
    with torch.no_grad():
        for size in (7, 12):
            assert model(torch.rand(3, 1, size, size, size)).shape == (3, 5)


def test_train_step_changes_weights_and_output():
    model = build_model("so3", 3, **{"widths": (24,), "kernel_sizes": 3, "pool_features": 4, "head": ()})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = gaussian_blobs(4, 9), torch.tensor([0, 1, 2, 0])
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_bad_input_shape_message():
    with pytest.raises(ValueError, match=r"\(B, 1, X, Y, Z\)"):
        tiny_model("cnn")(torch.rand(2, 3, 8, 8, 8))


def test_unknown_option_and_group_named():
    with pytest.raises(UsageError, match="'widht'"):
        build_model("cnn", 2, widht=3)
    with pytest.raises(UsageError, match="'so4'"):
        build_model("so4", 2)
    with pytest.raises(UsageError, match="'depth'"):
        model_from_config({"group": "so3", "depth": 3})
    with pytest.raises(UsageError, match="kernel_sizes"):
        build_model("cnn", 2, widths=(8, 8), kernel_sizes=(3, 4))
    with pytest.raises(UsageError, match="preset"):
        model_kwargs({"preset": "nope"})


def test_config_section_and_presets():
    kwargs = model_kwargs({"preset": "large_so3", "dropout": 0.2}, num_classes=7)
    assert kwargs["group"] == "so3" and kwargs["num_classes"] == 7 and kwargs["dropout"] == 0.2
    assert kwargs["widths"] == PRESETS["large_so3"]["widths"]
    model = model_from_config({"group": "cnn", "widths": [4, 8]}, num_classes=3)
    assert model(torch.rand(1, 1, 8, 8, 8)).shape == (1, 3)
    assert model.config["group"] == "cnn" and model.config["widths"] == [4, 8]


def test_yaml_presets_mirror_python_presets():
    import pathlib

    import yaml

    folder = pathlib.Path(__file__).resolve().parents[1] / "configs" / "models"
    files = sorted(folder.glob("*.yaml"))
    assert files
    for f in files:
        section = yaml.safe_load(f.read_text())["model"]
        name = f.stem.replace("-", "_")
        assert name in PRESETS, f
        assert model_kwargs(section) == model_kwargs({"preset": name}), f


def test_match_params_and_compute():
    ref_opts = dict(widths=(24, 48), kernel_sizes=3, pool_features=8, head=(16,))
    reference = build_model("so3", 4, **ref_opts)
    by_params = build_model("cnn", 4, match="params", **ref_opts)
    assert abs(count_parameters(by_params) / count_parameters(reference) - 1) < 0.25
    by_compute = build_model("cnn", 4, match="compute", match_resolution=16, **ref_opts)
    ratio = count_macs(by_compute, 16) / count_macs(reference, 16)
    assert 0.7 < ratio < 1.4
    assert by_compute.config["widths"] != list(ref_opts["widths"])
