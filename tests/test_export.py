"""export(): plain PyTorch, same logits as the escnn eval model, TorchScript round trip."""

import subprocess
import sys

import pytest
import torch

from vol3d.checkpoint import save_checkpoint
from vol3d.errors import FormatError, UsageError
from vol3d.models.export import export, export_torchscript, load_exported
from vol3d.models import MODEL_GROUPS
from vol3d.rotations import cube_rotations
from vol3d.testing import invariance_error, relative_error, tiny_model


def _no_escnn(module):
    return not any(type(m).__module__.startswith("escnn") for m in module.modules())


@pytest.mark.parametrize("group", MODEL_GROUPS)
def test_export_matches_escnn_eval(group):
    model = tiny_model(group)
    plain = export(model)
    assert _no_escnn(plain)
    assert model.training is False
    x = torch.randn(3, 1, 13, 13, 13)
    with torch.no_grad():
        assert relative_error(model(x), plain(x)) < 1e-5
        traced = torch.jit.trace(plain, x)
        assert relative_error(model(x), traced(x)) < 1e-5


@pytest.mark.parametrize("options", [dict(nonlinearity="gated"), dict(nonlinearity="norm"),
                                     dict(residual=True, blocks=2), dict(pool="invariants")])
def test_export_variants(options):
    model = tiny_model("so3", **options)
    plain = export(model)
    x = torch.randn(2, 1, 12, 12, 12)
    with torch.no_grad():
        assert relative_error(model(x), plain(x)) < 1e-5
    assert invariance_error(plain, x, cube_rotations()) < 1e-4


def test_export_leaves_train_mode_model_alone():
    model = tiny_model("octa")
    model.train()
    try:
        plain = export(model)
        assert model.training and not plain.training
    finally:
        model.eval()


def test_torchscript_file_needs_only_torch(tmp_path):
    model = tiny_model("so3")
    ckpt = save_checkpoint(tmp_path / "m.ckpt", model, list("abcde"))
    out = export_torchscript(ckpt, tmp_path / "m.pt", example_resolution=12)
    assert out.is_file() and not list(tmp_path.glob(".*partial"))
    x = torch.randn(2, 1, 11, 11, 11)  # another size and parity than the example
    with torch.no_grad():
        assert relative_error(model(x), load_exported(out)(x)) < 1e-5
    # a fresh interpreter that blocks vol3d and escnn imports
    code = ("import sys; sys.modules['escnn'] = None; sys.modules['vol3d'] = None; import torch; "
            f"m = torch.jit.load({str(out)!r}); print(tuple(m(torch.rand(1, 1, 9, 9, 9)).shape))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(1, 5)"


def test_load_exported_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(FormatError, match="bad.pt"):
        load_exported(bad)
    with pytest.raises(FormatError, match="missing.pt"):
        load_exported(tmp_path / "missing.pt")
    with pytest.raises(UsageError):
        export(torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_torch_compile_matches():
    plain = export(tiny_model("so2"))
    compiled = torch.compile(plain)
    x = torch.randn(2, 1, 10, 10, 10)
    with torch.no_grad():
        assert relative_error(plain(x), compiled(x)) < 1e-5
