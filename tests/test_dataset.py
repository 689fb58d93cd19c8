"""The torch VolumeDataset: values, lazy vs in-memory, DataLoader workers, errors."""

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vol3d.data.dataset import VolumeDataset, batch_loader
from vol3d.data.store import write_dataset
from vol3d.errors import FormatError

R, N = 6, 40
CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    arrays = {"volumes": (rng.random((N, R, R, R)) < 0.4).astype(np.uint8), "labels": rng.integers(0, 3, N),
              "sources": [f"s{i}" for i in range(N)]}
    path = tmp_path_factory.mktemp("ds") / "d.h5"
    write_dataset(path, {"train": arrays, "test": {k: v[:5] for k, v in arrays.items()}}, classes=CLASSES,
                  representation="solid", normalization="sphere")
    return path, arrays


def test_items_are_float_volumes_and_int64_labels(data):
    path, arrays = data
    ds = VolumeDataset(path)
    assert len(ds) == N and ds.classes == CLASSES and ds.resolution == R
    volume, label = ds[3]
    assert volume.shape == (1, R, R, R) and volume.dtype == torch.float32
    assert label.dtype == torch.int64 and int(label) == arrays["labels"][3]
    np.testing.assert_array_equal(volume[0].numpy(), arrays["volumes"][3])
    np.testing.assert_array_equal(ds[-1][0][0].numpy(), arrays["volumes"][-1])
    np.testing.assert_array_equal(ds.labels, arrays["labels"])
    assert ds.rotations.shape == (N, 3, 3)
    assert len(VolumeDataset(path, split="test")) == 5


def test_batched_fetch_keeps_index_order(data):
    path, arrays = data
    ds = VolumeDataset(path)
    indices = [17, 3, 3, 39, 0]
    batch = ds.__getitems__(indices)
    for (volume, label), i in zip(batch, indices):
        np.testing.assert_array_equal(volume[0].numpy(), arrays["volumes"][i])
        assert int(label) == arrays["labels"][i]


def test_in_memory_equals_lazy(data):
    path, _ = data
    lazy, memory = VolumeDataset(path), VolumeDataset(path, in_memory=True)
    for i in (0, 11, N - 1):
        assert torch.equal(lazy[i][0], memory[i][0]) and torch.equal(lazy[i][1], memory[i][1])


def test_transform_is_applied(data):
    path, arrays = data
    ds = VolumeDataset(path, transform=lambda v: 2 * v)
    np.testing.assert_array_equal(ds[5][0][0].numpy(), 2 * arrays["volumes"][5])
    assert torch.equal(ds.__getitems__([5])[0][0], ds[5][0])


def test_dataloader_with_workers_reads_every_sample_once(data):
    path, arrays = data
    ds = VolumeDataset(path)
    ds[0]  # the parent holds an open handle: workers must open their own
    loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(0))
    volumes, labels = zip(*loader)
    volumes, labels = torch.cat(volumes), torch.cat(labels)
    assert volumes.shape == (N, 1, R, R, R) and labels.dtype == torch.int64
    order = np.lexsort(volumes.reshape(N, -1).numpy().T)  # match up samples regardless of the shuffle
    expected = np.lexsort(arrays["volumes"].reshape(N, -1).T)
    np.testing.assert_array_equal(volumes.numpy()[order, 0], arrays["volumes"][expected])
    assert sorted(labels.tolist()) == sorted(arrays["labels"].tolist())


def test_pickles_without_the_file_handle(data):
    path, _ = data
    ds = VolumeDataset(path)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None and torch.equal(clone[1][0], ds[1][0])


def test_errors(data, tmp_path):
    path, _ = data
    with pytest.raises(FormatError, match="no split 'val'"):
        VolumeDataset(path, split="val")
    with pytest.raises(IndexError):
        VolumeDataset(path)[N]
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(FormatError, match="not an HDF5 file"):
        VolumeDataset(tmp_path / "x.h5")


def test_sequence_index_returns_a_stacked_batch(data):
    path, arrays = data
    ds = VolumeDataset(path, transform=lambda v: v + 1)
    volumes, labels = ds[np.array([4, 1, 4])]
    assert volumes.shape == (3, 1, R, R, R) and labels.tolist() == arrays["labels"][[4, 1, 4]].tolist()
    np.testing.assert_array_equal(volumes[:, 0].numpy(), arrays["volumes"][[4, 1, 4]] + 1)
    batches = list(batch_loader(ds, 16, shuffle=False))
    assert [len(y) for _, y in batches] == [16, 16, 8]
    assert torch.equal(torch.cat([v for v, _ in batches]), ds[np.arange(N)][0])
    shuffled = [torch.cat(b) for b in zip(*batch_loader(ds, 16, seed=3, num_workers=2))]
    again = [torch.cat(b) for b in zip(*batch_loader(ds, 16, seed=3))]
    assert torch.equal(shuffled[1], again[1]) and not torch.equal(shuffled[1], ds[np.arange(N)][1])
    assert sorted(shuffled[1].tolist()) == sorted(arrays["labels"].tolist())
