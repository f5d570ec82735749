"""Train a MaiT on Fashion-MNIST (CPU, seeded, resumable).

    python training/train.py --run-dir ~/.cache/mait-train/demo --epochs 30
    python training/train.py --run-dir ~/.cache/mait-train/demo --epochs 30 --resume

The run folder (keep it outside the work tree) receives ``state.pt`` (model + optimizer + scheduler + RNG,
written atomically at the end of every epoch), ``log.jsonl`` (one line per epoch) and ``final/`` (a
mait-deploy checkpoint folder of the last epoch). Data come from the Debian package
``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist) through mait_deploy's IDX reader.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mait_deploy.config import MaiTConfig  # noqa: E402
from mait_deploy.device.data.fashion_mnist import load_split  # noqa: E402
from mait_deploy.host.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from mait_deploy.host.model.mait import MaiT, variant_config  # noqa: E402


@dataclasses.dataclass
class TrainOptions:
    run_dir: Path
    variant: str = "mait_demo_28"
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1.5e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    shift: int = 2  # random translation in pixels (pad + crop)
    flip: bool = True
    seed: int = 0
    bf16: bool = True  # autocast matmuls to bf16 (AVX-512 BF16 here: ~1.5x faster); weights stay FP32
    unmasked: bool = False
    mask_mode: str | None = None  # additive | multiplicative (default: the variant's)
    schedule: str | None = None  # a preset (uniform:K, mixed, none) or a JSON list of head lists per block
    pattern: str | None = None  # window | random (the control: same density, random positions)
    embed_dim: int | None = None
    depth: int | None = None
    # pyramid variants: JSON [[blocks, width, heads], ...] per stage (replaces embed_dim/depth)
    stages: str | None = None
    train_subset: int | None = None
    threads: int | None = None
    resume: bool = False
    data_dir: str | None = None
    # Warm restart: start from this checkpoint folder's weights with a new optimizer and a new schedule
    # (same config required). The run's log then continues the checkpoint's training, it does not repeat it.
    init_from: str | None = None


def model_config(opts: TrainOptions) -> MaiTConfig:
    overrides: dict[str, object] = {}
    if opts.embed_dim:
        overrides["embed_dim"] = opts.embed_dim
    if opts.depth:
        overrides["depth"] = opts.depth
    if opts.stages:
        depths, dims, heads = (tuple(int(v) for v in column) for column in zip(*json.loads(opts.stages)))
        overrides.update(stage_depths=depths, stage_dims=dims, stage_heads=heads, embed_dim=dims[0],
                         num_heads=heads[0], depth=sum(depths))
    mask_changes: dict[str, object] = {}
    if opts.mask_mode:
        mask_changes["mode"] = opts.mask_mode
    if opts.schedule:
        schedule = json.loads(opts.schedule) if opts.schedule.lstrip().startswith("[") else opts.schedule
        mask_changes.update(schedule=schedule, masked_heads=None, masked_blocks=None)
    if opts.pattern:
        mask_changes.update(pattern=opts.pattern, seed=opts.seed)
    if mask_changes:
        overrides["mask"] = dataclasses.replace(variant_config(opts.variant).mask, **mask_changes)
    config = variant_config(opts.variant, **overrides)
    return config.unmasked() if opts.unmasked else config


def augment(images: torch.Tensor, shift: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``shift`` pixels (zero padding) and random horizontal flips."""
    batch, _, height, width = images.shape
    if shift:
        padded = F.pad(images, (shift, shift, shift, shift))
        dy = torch.randint(0, 2 * shift + 1, (batch,), generator=generator)
        dx = torch.randint(0, 2 * shift + 1, (batch,), generator=generator)
        rows = (dy[:, None] + torch.arange(height)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width)[None, :])[:, None, None, :]
        images = padded[torch.arange(batch)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None],
                        rows, cols]
    if flip:
        flips = torch.rand(batch, generator=generator) < 0.5
        images = torch.where(flips[:, None, None, None], images.flip(-1), images)
    return images


def to_input(images: np.ndarray, config: MaiTConfig) -> torch.Tensor:
    """uint8 [N, 28, 28] -> normalised float [N, 1, 28, 28]: the same arithmetic as mait_deploy.device.preprocess."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
    mean, std = config.preprocess.mean[0], config.preprocess.std[0]
    return (x - mean) / std


@torch.no_grad()
def evaluate(model: MaiT, inputs: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(inputs), batch):
        correct += (model(inputs[start:start + batch]).argmax(-1) == labels[start:start + batch]).sum().item()
    return correct / len(inputs)


def lr_at(step: int, total: int, warmup: int, opts: TrainOptions) -> float:
    if step < warmup:
        return opts.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return opts.min_lr + 0.5 * (opts.lr - opts.min_lr) * (1 + math.cos(math.pi * progress))


def _param_groups(model: MaiT, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim <= 1 or name in model.no_weight_decay() else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(opts: TrainOptions, log=print) -> dict:
    """Train (or resume) and return a summary dict; the final checkpoint is written to run_dir/final."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    run_dir = Path(opts.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = model_config(opts)
    train_images, train_labels = load_split("train", opts.data_dir)
    test_images, test_labels = load_split("test", opts.data_dir)
    if opts.train_subset:
        order = np.random.default_rng(opts.seed).permutation(len(train_images))[: opts.train_subset]
        train_images, train_labels = train_images[order], train_labels[order]
    x_train, y_train = to_input(train_images, config), torch.from_numpy(train_labels)
    x_test, y_test = to_input(test_images, config), torch.from_numpy(test_labels)

    torch.manual_seed(opts.seed)
    model = MaiT(config)
    if opts.init_from:
        warm = load_checkpoint(opts.init_from)
        if warm.config.to_dict() != config.to_dict():
            raise SystemExit(f"{opts.init_from} has another config than --variant/--schedule ask for")
        model.load_state_dict(warm.state_dict())
        log(f"warm restart from {opts.init_from}")
    optimizer = torch.optim.AdamW(_param_groups(model, opts.weight_decay), lr=opts.lr)
    steps_per_epoch = len(x_train) // opts.batch_size
    total_steps = steps_per_epoch * opts.epochs
    warmup_steps = int(opts.warmup_epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(opts.seed)
    start_epoch, history = 0, []

    state_path = run_dir / "state.pt"
    if opts.resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["config"] != config.to_dict():
            raise SystemExit(f"{state_path} was trained with another config; use a new --run-dir")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, history = state["epoch"], state["history"]
        log(f"resumed from epoch {start_epoch} ({state_path})")

    params = sum(p.numel() for p in model.parameters())
    log(f"{config.name} backbone={config.backbone} mask={config.mask.mode}/{config.mask.pattern} "
        f"heads={[len(h) for h in config.layer_heads()]} params={params:,} train={len(x_train)} "
        f"epochs={opts.epochs} steps/epoch={steps_per_epoch} threads={torch.get_num_threads()} bf16={opts.bf16}")
    for epoch in range(start_epoch, opts.epochs):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(x_train), generator=generator)
        loss_sum = 0.0
        for step in range(steps_per_epoch):
            global_step = epoch * steps_per_epoch + step
            for group in optimizer.param_groups:
                group["lr"] = lr_at(global_step, total_steps, warmup_steps, opts)
            index = order[step * opts.batch_size:(step + 1) * opts.batch_size]
            images = augment(x_train[index], opts.shift, opts.flip, generator)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=opts.bf16):
                logits = model(images)
            loss = F.cross_entropy(logits.float(), y_train[index], label_smoothing=opts.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            loss_sum += loss.item()
            if sys.stdout.isatty() and step % 20 == 0:
                print(f"\r  epoch {epoch + 1}/{opts.epochs} step {step}/{steps_per_epoch} loss {loss.item():.3f}",
                      end="", flush=True)
        seconds = time.perf_counter() - started
        accuracy = evaluate(model, x_test, y_test)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / steps_per_epoch, "test_top1": accuracy,
                  "seconds": round(seconds, 1), "lr": optimizer.param_groups[0]["lr"]}
        history.append(record)
        if sys.stdout.isatty():
            print()
        log(json.dumps(record))
        with open(run_dir / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        temp = state_path.with_suffix(".tmp")
        torch.save({"config": config.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "epoch": epoch + 1,
                    "history": history}, temp)
        os.replace(temp, state_path)

    final_accuracy = history[-1]["test_top1"] if history else evaluate(model, x_test, y_test)
    save_checkpoint(model.eval(), run_dir / "final", metadata={"test_top1": f"{final_accuracy:.4f}",
                                                               "epochs": str(opts.epochs), "seed": str(opts.seed)})
    return {"config": config.to_dict(), "params": params, "options": {k: str(v) for k, v in vars(opts).items()},
            "history": history, "test_top1": final_accuracy}


def parse_args(argv: list[str] | None = None) -> TrainOptions:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrainOptions(run_dir=Path("."))
    parser.add_argument("--run-dir", type=Path, required=True)
    for field in dataclasses.fields(TrainOptions):
        if field.name in ("run_dir",):
            continue
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            kind = {"embed_dim": int, "depth": int, "train_subset": int, "threads": int, "data_dir": str,
                    "mask_mode": str, "schedule": str, "pattern": str, "init_from": str}.get(
                field.name, type(default))
            parser.add_argument(flag, type=kind, default=default)
    return TrainOptions(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    summary = train(parse_args())
    print(json.dumps({"test_top1": summary["test_top1"], "params": summary["params"]}))
