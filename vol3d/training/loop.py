"""The trainer behind ``vol3d train``: :func:`train`.

A run folder holds::

    config.yaml      the resolved config (every default filled in)
    metrics.jsonl    one JSON line per epoch: loss/accuracy (train, val), lr, samples/s, time
    last.pt          written atomically after every epoch (and on SIGINT/SIGTERM mid-epoch), with the
                     training state: optimizer, schedule, epoch and step, RNG states, best accuracy
    best.pt          the weights of the epoch with the best validation accuracy (no training state)
    tensorboard/     when TensorBoard is installed

Checkpoints use :mod:`vol3d.checkpoint` (the one format; :func:`vol3d.load_model` reads both).

Resuming (``resume=True``) restores the model, optimizer, schedule, GradScaler and RNG states
(torch, numpy, python) and continues at the saved epoch and step; the data order and the
augmentation rotations are functions of ``(seed, epoch, step)`` (see :mod:`.data` and
:mod:`.augment`), so a resumed run on CPU ends with the same weights as an uninterrupted one.

Under ``torchrun`` the model is wrapped in ``DistributedDataParallel``; ``train.batch_size`` is per
process; rank 0 logs and writes the run folder; metrics are summed over processes. (Resumption is
exact for a single process; under torchrun the other ranks' dropout streams are re-seeded.)
"""

from __future__ import annotations

import json
import math
import random
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..checkpoint import load_checkpoint, load_model_state, save_checkpoint
from ..data.voxelize import background_value
from ..errors import Vol3dError
from ..files import write_text_atomic
from ..models import count_parameters, model_from_config
from . import distributed as D
from .augment import augment_batch, batch_rng
from .config import ConfigError, dump_config, load_config, resolve_device_name
from .data import EpochSampler, dataset_file, load_data, loader, shard

#: keys that may change between a run and its resumption (everything else must match)
RESUMABLE_CHANGES = ("device", "train.epochs", "train.stop_after", "train.compile", "data.num_workers", "data.cache_dir", "data.path")


class TrainingError(Vol3dError):
    """The run cannot go on (a non-finite loss); the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped the run after writing ``checkpoint``; ``train(..., resume=True)`` continues it."""

    def __init__(self, message: str, checkpoint: Path, epoch: int, step: int):
        super().__init__(message)
        self.checkpoint, self.epoch, self.step = checkpoint, epoch, step


def train(config, *, out=None, overrides=(), resume: bool = False, device=None, progress: bool = True) -> dict:
    """Train a classifier as ``config`` says; returns a summary dict.

    Args:
        config: a YAML file path or a config dict (see :mod:`vol3d.training.config`).
        out: the run folder (default ``runs/<config file stem>``, or ``runs/train`` for a dict).
        overrides: ``"key.sub=value"`` strings applied on top of the config (``--set``).
        resume: continue the run in ``out`` from its ``last.pt``.
        device: overrides the config's ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``).
        progress: show a progress bar per epoch (the per-epoch summary lines are always printed).

    Returns:
        ``run_dir``, ``epochs`` (completed), ``best_val_acc``/``best_epoch`` (by validation
        accuracy, or train accuracy when there is no validation), ``last_val_acc``,
        ``last_train_acc``, ``last_train_loss``, ``checkpoints`` (``last``/``best`` paths),
        ``metrics``, ``config`` (paths), ``num_params``, ``device``, ``world_size``, ``seconds``.

    Raises:
        ConfigError: bad config (before any work); TrainingError: a non-finite loss;
        TrainingInterrupted: SIGINT/SIGTERM (after writing ``last.pt``).
    """
    cfg = load_config(config, overrides)
    if device is not None:
        cfg["device"] = resolve_device_name(device)
    run_dir = Path(out) if out is not None else Path("runs") / (Path(config).stem if isinstance(config, (str, Path)) else "train")
    ctx = D.env_context()
    dev = D.resolve_device(cfg["device"], ctx.local_rank)
    _check_run_dir(run_dir, resume, cfg)
    ctx = D.setup(ctx, dev)
    try:
        summary = Trainer(cfg, run_dir, ctx, dev, progress).run(resume)
        D.barrier(ctx)  # every rank done before the group is torn down: gloo can abort a rank otherwise
        return summary
    finally:
        D.cleanup(ctx)


def _check_run_dir(run_dir: Path, resume: bool, cfg: dict) -> None:
    """A fresh run must not overwrite a run with checkpoints; a resumed one needs ``last.pt`` and a
    config that differs only in :data:`RESUMABLE_CHANGES`."""
    last = run_dir / "last.pt"
    if not resume:
        if last.exists():
            raise ConfigError(f"{run_dir} already holds a run (last.pt); resume it with --resume or choose another --out")
        return
    if not last.exists():
        raise ConfigError(f"nothing to resume: {last} does not exist")
    saved_file = run_dir / "config.yaml"
    if saved_file.exists():
        import yaml

        saved = yaml.safe_load(saved_file.read_text())
        for key, old, new in _differences(saved, cfg):
            if key not in RESUMABLE_CHANGES and not key.startswith(tuple(k + "." for k in RESUMABLE_CHANGES)):
                raise ConfigError(f"cannot resume {run_dir}: config key '{key}' was {old!r}, now {new!r} "
                                  f"(only {', '.join(RESUMABLE_CHANGES)} may change)")


def _differences(a, b, prefix=""):
    """``(dotted key, a value, b value)`` for every leaf that differs between two nested dicts."""
    for key in sorted(set(a) | set(b), key=str):
        name = f"{prefix}{key}"
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            yield from _differences(x, y, name + ".")
        elif x != y:
            yield name, x, y


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """torch (CPU and CUDA), numpy and python RNG states as tensors and plain types (checkpointable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_py = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss_py},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def warmup_cosine(total_steps: int, warmup_steps: int, floor: float, cosine: bool = True):
    """The learning-rate factor at optimizer step ``t``: ``(t + 1) / warmup`` during the warm-up,
    then ``floor + (1 - floor) (1 + cos(pi p)) / 2`` with ``p`` the fraction of the remaining steps
    done (``1`` throughout for ``cosine=False``)."""

    def factor(t: int) -> float:
        if t < warmup_steps:
            return (t + 1) / warmup_steps
        if not cosine:
            return 1.0
        p = min(1.0, (t - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))

    return factor


def make_optimizer(params, opt: dict) -> torch.optim.Optimizer:
    """AdamW (default), Adam or SGD with Nesterov momentum from the ``optimizer:`` section."""
    if opt["name"] == "sgd":
        return torch.optim.SGD(params, lr=opt["lr"], momentum=opt["momentum"], nesterov=opt["momentum"] > 0,
                               weight_decay=opt["weight_decay"])
    cls = torch.optim.AdamW if opt["name"] == "adamw" else torch.optim.Adam
    return cls(params, lr=opt["lr"], betas=tuple(opt["betas"]), weight_decay=opt["weight_decay"])


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Mean cross-entropy with label smoothing, computed in float32."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def amp_dtype(setting: str, device: torch.device):
    """The autocast dtype: ``auto`` is bf16 on CUDA GPUs that support it, else fp16, and none off CUDA."""
    if setting == "none" or device.type != "cuda":
        return None
    if setting == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if setting == "bf16" else torch.float16


class GracefulStop:
    """While active, SIGINT/SIGTERM only set :attr:`signal` (the trainer then checkpoints and stops);
    a second SIGINT interrupts at once. Handlers are installed only in the main thread."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


class Trainer:
    """One training run (use :func:`train`). Holds the model, optimizer, schedule and data of the run."""

    def __init__(self, cfg: dict, run_dir: Path, ctx: D.Context, device: torch.device, progress: bool):
        self.cfg, self.run_dir, self.ctx, self.device = cfg, Path(run_dir), ctx, device
        self.progress = progress and ctx.is_main
        t = cfg["train"]
        self.seed, self.epochs = cfg["seed"], t["epochs"]
        seed_everything(self.seed)
        self.data = self._load_data()
        self.sampler = EpochSampler(self.data.train_groups, num_replicas=ctx.world_size, rank=ctx.rank, seed=self.seed)
        self.drop_last = self.sampler.num_samples > t["batch_size"]  # no tiny last batch for batch norm
        self.steps_per_epoch = len(self.sampler.batches(t["batch_size"], self.drop_last))
        if self.steps_per_epoch == 0:
            raise ConfigError("config key 'train.batch_size': no training batch (the training split is empty)")
        seed_everything(self.seed)  # the same initial weights on every process, whatever the data took
        self.model = model_from_config(cfg["model"], num_classes=len(self.data.classes)).to(device)
        self.optimizer = make_optimizer(self.model.parameters(), cfg["optimizer"])
        total = self.epochs * self.steps_per_epoch
        warmup = int(round(cfg["schedule"]["warmup_epochs"] * self.steps_per_epoch))
        factor = warmup_cosine(total, warmup, cfg["schedule"]["min_lr"] / max(cfg["optimizer"]["lr"], 1e-30),
                               cosine=cfg["schedule"]["name"] == "cosine")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.amp = amp_dtype(t["amp"], device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.epoch, self.step, self.best, self.best_epoch = 0, 0, -1.0, 0
        self.partial = [0.0, 0.0, 0.0]  # loss sum, correct, samples of the current epoch so far
        self.net = self.model
        torch.manual_seed(self.seed + ctx.rank)  # dropout: one stream per process

    # ------------------------------------------------------------------------------ set-up
    def _load_data(self):
        data = self.cfg["data"]
        if self.ctx.is_main:  # may voxelize/import into the cache: one process does it
            file = dataset_file(data, progress=self.progress)
        D.barrier(self.ctx)
        if not self.ctx.is_main:
            file = dataset_file(data, progress=False)
        return load_data(data, self.seed, file=file)

    def _wrap(self) -> None:
        """DDP and ``torch.compile`` around the model (the checkpoints save ``self.model``)."""
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if self.cfg["train"]["compile"]:
            self.net = torch.compile(self.net)

    def _resume(self) -> None:
        ckpt = load_checkpoint(self.run_dir / "last.pt", map_location="cpu")
        state = ckpt.get("training")
        if state is None:
            raise ConfigError(f"cannot resume: {self.run_dir / 'last.pt'} has no training state")
        if list(ckpt["classes"]) != list(self.data.classes):
            raise ConfigError(f"cannot resume {self.run_dir}: the data's classes differ from the run's")
        load_model_state(self.model, ckpt["state_dict"], str(self.run_dir / "last.pt"))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.partial = [float(v) for v in state["partial"]]
        if self.ctx.is_main:
            set_rng_state(state["rng"])
        else:
            torch.manual_seed(self.seed + 1000003 * self.ctx.rank + 7919 * self.epoch + self.step)
        if self.step >= self.steps_per_epoch:  # batch size or data changed under us
            raise ConfigError(f"cannot resume {self.run_dir}: step {self.step} of epoch {self.epoch + 1} "
                              f"is past its {self.steps_per_epoch} batches")
        if self.ctx.is_main:
            _keep_metrics_before(self.run_dir / "metrics.jsonl", self.epoch)

    # ------------------------------------------------------------------------------ run
    def run(self, resume: bool) -> dict:
        start = time.time()
        if resume:
            self._resume()
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / "config.yaml", dump_config(self.cfg))
        self._wrap()
        self._announce(resume)
        tb = self._tensorboard()
        last = {}
        stop_at = min(self.epochs, self.cfg["train"]["stop_after"] or self.epochs)
        if self.epoch >= stop_at and self.ctx.is_main:
            print(f"nothing to do: {self.run_dir} has {self.epoch} of {stop_at} epochs done", flush=True)
        try:
            with GracefulStop() as stop:
                while self.epoch < stop_at:
                    last = self._epoch(stop, tb)
        finally:
            if tb is not None:
                tb.close()
        return self._summary(last, time.time() - start)

    def _announce(self, resume: bool) -> None:
        if not self.ctx.is_main:
            return
        d = self.data
        what = f"resuming at epoch {self.epoch + 1}, step {self.step}" if resume else "training"
        copies = f", {d.num_copies} stored copies each" if d.num_copies > 1 else ""
        print(f"{what}: {self.model.group} model ({count_parameters(self.model):,} parameters) on "
              f"{self.device}{f' x{self.ctx.world_size}' if self.ctx.enabled else ''}; "
              f"data {d.path.name}: {len(d.classes)} classes, {d.resolution}^3, {d.num_train} training objects"
              f"{copies}, validation: {d.val_source} ({len(d.val_index)}); run folder {self.run_dir}", flush=True)

    def _tensorboard(self):
        if not self.ctx.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # not installed: metrics.jsonl only
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def _epoch(self, stop: GracefulStop, tb) -> dict:
        t, aug = self.cfg["train"], self.cfg["augment"]
        self.sampler.set_epoch(self.epoch)
        batches = self.sampler.batches(t["batch_size"], self.drop_last)
        self.net.train()
        bar = tqdm(total=len(batches), initial=self.step, desc=f"epoch {self.epoch + 1}/{self.epochs}",
                   unit="batch", disable=not self.progress, leave=False, dynamic_ncols=True)
        tic, seen = time.time(), 0
        data = loader(self.data.train, batches[self.step:], self.cfg["data"]["num_workers"],
                      pin_memory=self.device.type == "cuda")
        for x, y in data:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            x = augment_batch(x, aug["rotation"], batch_rng(self.seed, self.epoch, self.step, self.ctx.rank),
                              mode=aug["mode"], padding=aug["padding"],
                              background=background_value(self.data.representation))
            logits, loss = self._forward(x, y)
            value = float(loss.detach())
            # every process learns of a bad loss before anyone starts the gradient all-reduce
            if D.any_flag(self.ctx, [not math.isfinite(value)], self.device)[0]:
                bar.close()
                raise TrainingError(self._nonfinite_message(value))
            self._backward(loss)
            loss, correct = value, int((logits.detach().argmax(1) == y).sum())
            self.step += 1
            seen += len(y)
            self.partial = [self.partial[0] + loss * len(y), self.partial[1] + correct, self.partial[2] + len(y)]
            rate = seen * self.ctx.world_size / max(time.time() - tic, 1e-9)
            bar.set_postfix(loss=f"{self.partial[0] / self.partial[2]:.4f}",
                            acc=f"{self.partial[1] / self.partial[2]:.1%}", samples_s=f"{rate:.1f}", refresh=False)
            bar.update(1)
            if D.any_flag(self.ctx, [stop.signal is not None], self.device)[0] and self.step < len(batches):
                bar.close()
                self._interrupt(stop.signal)
        bar.close()
        return self._end_epoch(time.time() - tic, seen, stop, tb)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None else nullcontext()

    def _forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, loss)`` of a training batch."""
        with self._autocast():
            logits = self.net(x)
        return logits, loss_fn(logits, y, self.cfg["train"]["label_smoothing"])

    def _backward(self, loss: torch.Tensor) -> None:
        """One optimizer step (with gradient clipping, loss scaling for fp16) and one schedule step."""
        t = self.cfg["train"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if t["grad_clip"] is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float, int]:
        """``(mean loss, accuracy, samples)`` on the validation samples (aligned, no augmentation),
        summed over processes. ``(nan, nan, 0)`` without validation."""
        if self.data.val is None:
            return math.nan, math.nan, 0
        self.net.eval()
        index = shard(self.data.val_index, self.ctx.rank, self.ctx.world_size)
        size = self.cfg["train"]["eval_batch_size"] or self.cfg["train"]["batch_size"]
        batches = [index[i:i + size].tolist() for i in range(0, len(index), size)]
        total = [0.0, 0.0, 0.0]
        model = self.model if self.ctx.enabled else self.net  # no DDP buffer sync in evaluation
        for x, y in loader(self.data.val, batches, self.cfg["data"]["num_workers"]):
            x, y = x.to(self.device), y.to(self.device)
            with self._autocast():
                logits = model(x)
            total[0] += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            total[1] += int((logits.argmax(1) == y).sum())
            total[2] += len(y)
        self.net.train()
        loss_sum, correct, n = D.all_sum(self.ctx, total, self.device)
        return (loss_sum / n, correct / n, int(n)) if n else (math.nan, math.nan, 0)

    def _end_epoch(self, seconds: float, seen: int, stop: GracefulStop, tb) -> dict:
        loss_sum, correct, n = D.all_sum(self.ctx, self.partial, self.device)
        val_loss, val_acc, val_n = self.evaluate()
        samples = D.all_sum(self.ctx, [seen], self.device)[0]
        self.epoch, self.step, self.partial = self.epoch + 1, 0, [0.0, 0.0, 0.0]
        record = {
            "epoch": self.epoch, "train_loss": loss_sum / n, "train_acc": correct / n,
            "val_loss": None if val_n == 0 else val_loss, "val_acc": None if val_n == 0 else val_acc,
            "lr": self.optimizer.param_groups[0]["lr"], "samples_per_s": samples / max(seconds, 1e-9),
            "seconds": seconds, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        score = record["val_acc"] if val_n else record["train_acc"]
        improved = score > self.best
        if improved:
            self.best, self.best_epoch = score, self.epoch
        if self.ctx.is_main:
            _append_jsonl(self.run_dir / "metrics.jsonl", record)
            if tb is not None:
                for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "samples_per_s"):
                    if record[key] is not None:
                        tb.add_scalar(key, record[key], self.epoch)
            self._save(self.run_dir / "last.pt", training=True)
            if improved:
                self._save(self.run_dir / "best.pt", training=False)
            print(_epoch_line(record, self.epochs, self.best, improved), flush=True)
        if D.any_flag(self.ctx, [stop.signal is not None], self.device)[0] and self.epoch < self.epochs:
            self._interrupt(stop.signal, saved=True)
        return record

    # ------------------------------------------------------------------------------ checkpoints
    def _save(self, path: Path, training: bool) -> None:
        state = None
        if training:
            state = {
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "epoch": self.epoch, "step": self.step, "best": self.best, "best_epoch": self.best_epoch,
                "partial": list(self.partial), "rng": rng_state(),
                "world_size": self.ctx.world_size,
            }
            if self.scaler.is_enabled():
                state["scaler"] = self.scaler.state_dict()
        # the checkpoint records the grid the model was trained on as data.grid (evaluation
        # resamples to it); data.resolution stays what the config said: an .npz is resampled to
        # it before any padding, and left unset the data keep their own (not the padded grid)
        data = {**self.cfg["data"], "grid": self.data.resolution}
        config = {**self.cfg, "data": data}
        save_checkpoint(path, self.model, self.data.classes, config=config, training=state)

    def _interrupt(self, signum, saved: bool = False):
        last = self.run_dir / "last.pt"
        if not saved:
            D.barrier(self.ctx)
            if self.ctx.is_main:
                self._save(last, training=True)
        name = signal.Signals(signum).name if signum is not None else "signal"
        where = f"after epoch {self.epoch}" if saved else f"in epoch {self.epoch + 1} after step {self.step}"
        raise TrainingInterrupted(f"{name}: stopped {where}; wrote {last}; continue with --resume",
                                  last, self.epoch, self.step)

    def _nonfinite_message(self, loss: float) -> str:
        last = self.run_dir / "last.pt"
        keep = (f"the last good checkpoint {last} (after epoch {self.epoch}) is kept" if self.epoch > 0 and last.exists()
                else "no checkpoint was written")
        return (f"loss became {loss} at epoch {self.epoch + 1}, step {self.step + 1}; training stopped ({keep}). "
                "Try a lower optimizer.lr or train.grad_clip")

    def _summary(self, last: dict, seconds: float) -> dict:
        best = self.run_dir / "best.pt"
        return {
            "run_dir": str(self.run_dir), "epochs": self.epoch,
            "best_val_acc": self.best if self.data.val is not None and self.best >= 0 else None,
            "best_epoch": self.best_epoch,
            "last_val_acc": last.get("val_acc"), "last_train_acc": last.get("train_acc"),
            "last_train_loss": last.get("train_loss"),
            "checkpoints": {"last": str(self.run_dir / "last.pt"), "best": str(best) if best.exists() else None},
            "metrics": str(self.run_dir / "metrics.jsonl"), "config": str(self.run_dir / "config.yaml"),
            "num_params": count_parameters(self.model), "device": str(self.device),
            "world_size": self.ctx.world_size, "seconds": seconds,
        }


def _epoch_line(r: dict, epochs: int, best: float, improved: bool) -> str:
    val = "" if r["val_acc"] is None else f" | val loss {r['val_loss']:.4f} acc {r['val_acc']:.1%}"
    mark = " *" if improved else ""
    return (f"epoch {r['epoch']}/{epochs} | train loss {r['train_loss']:.4f} acc {r['train_acc']:.1%}{val}"
            f" | best {best:.1%}{mark} | lr {r['lr']:.2e} | {r['samples_per_s']:.1f} samples/s | {r['seconds']:.1f}s")


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _keep_metrics_before(path: Path, epoch: int) -> None:
    """Drop lines of epochs after ``epoch`` (written before an interruption the checkpoint does not cover)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("epoch", 0) <= epoch]
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(ln + "\n" for ln in kept))
