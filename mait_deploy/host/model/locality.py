"""The paper's Attention Locality Score (Eq. 3) of every head, and the mask schedule its section 4.2 rule gives.

ALS of a head = the mean, over patch queries and images, of the attention weight that falls on the keys the
query's window keeps (its neighbouring patches and the class/distillation tokens, which every mask keeps).
A head masked with an additive (hard) mask scores 1.0; a head that attends uniformly scores the mean share of
kept keys (about window / tokens). The rule (section 4.2): with head 0 of every block masked, mask all heads of
a block where head 0's ALS is near 1, keep one masked head where it is in between, and none where it is near 0.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from mait_deploy._io import write_json
from mait_deploy._plots import pyplot, save_png
from mait_deploy.device.data.sources import load_dataset
from mait_deploy.errors import UnsupportedOption
from mait_deploy.host.model.masks import token_keep
from mait_deploy.host.model.zoo import resolve_checkpoint


@dataclass(frozen=True)
class SuggestRule:
    """Thresholds of the section 4.2 rule on the probe head's ALS."""

    all_heads_above: float = 0.75
    no_heads_below: float = 0.35
    probe_head: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.no_heads_below <= self.all_heads_above <= 1.0:
            raise UnsupportedOption(f"thresholds must satisfy 0 <= no-heads-below ({self.no_heads_below}) <= "
                                    f"all-heads-above ({self.all_heads_above}) <= 1")
        if self.probe_head < 0:
            raise UnsupportedOption(f"probe head must be a head index, got {self.probe_head}")

    def schedule(self, scores: np.ndarray) -> list[list[int]]:
        """The masked heads per block from an ALS table [blocks, heads]."""
        if self.probe_head >= scores.shape[1]:
            raise UnsupportedOption(f"probe head {self.probe_head} out of range for {scores.shape[1]} heads")
        result = []
        for row in scores:
            probe = float(row[self.probe_head])
            if probe >= self.all_heads_above:
                result.append(list(range(scores.shape[1])))
            elif probe <= self.no_heads_below:
                result.append([])
            else:
                result.append([self.probe_head])
        return result


@dataclass
class LocalityReport:
    model: str
    images: int
    window: str
    mask_mode: str
    scores: list[list[float]]  # [block][head]
    masked: list[list[int]]  # the checkpoint's own schedule
    uniform_baseline: float  # the ALS of a head that attends uniformly
    suggested_schedule: list[list[int]] | None = None
    rule: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def attention_locality(model: Any, images: np.ndarray, batch: int = 64,
                       progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """ALS [blocks, heads] of a MaiT on preprocessed images [N, C, H, W] (the model's own masks applied)."""
    import torch

    config = model.config
    keep = torch.from_numpy(token_keep(config, pattern="window"))
    prefix = config.num_prefix_tokens
    totals = np.zeros((config.depth, config.num_heads), dtype=np.float64)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = model.embed(torch.from_numpy(np.ascontiguousarray(images[start:start + batch])))
            for index, block in enumerate(model.blocks):
                mask = model.block_mask(index)
                weights, _ = block.attn.attention_weights(block.norm1(x), mask)
                inside = (weights[:, :, prefix:, :] * keep[prefix:]).sum(-1)  # [B, heads, patch queries]
                totals[index] += inside.mean(-1).sum(0).double().numpy()
                x = block(x, mask)
            if progress:
                progress(min(start + batch, len(images)), len(images))
    return totals / len(images)


def uniform_baseline(config: Any) -> float:
    """The ALS of a head whose weights are uniform over all tokens."""

    keep = token_keep(config, pattern="window")[config.num_prefix_tokens:]
    return float(keep.sum(1).mean() / keep.shape[1])


def locality_report(checkpoint: str | os.PathLike[str] | None = None, data: str = "fashion-mnist",
                    count: int = 500, seed: int = 0, rule: SuggestRule | None = None,
                    progress: Callable[[int, int], None] | None = None) -> LocalityReport:
    """ALS of every head of a checkpoint on real images; with ``rule`` also the schedule it suggests."""
    from mait_deploy.host.model.checkpoint import load_checkpoint

    if count < 1:
        raise UnsupportedOption(f"count must be positive, got {count}")
    model = load_checkpoint(resolve_checkpoint(checkpoint))
    config = model.config
    if config.backbone == "pyramid":
        raise UnsupportedOption("locality scores cover the monolithic backbones (deit, cait); a pyramid changes its "
                                "token grid and head count per stage")
    dataset = load_dataset(data, "evaluation", config.preprocess, config.label_names(), count=count, seed=seed,
                           strict=False, num_classes=config.num_classes)
    scores = attention_locality(model, dataset.inputs, progress=progress)
    report = LocalityReport(
        model=config.name, images=len(dataset.inputs), window=config.mask.window_label, mask_mode=config.mask.mode,
        scores=np.round(scores, 4).tolist(), masked=[list(h) for h in config.layer_heads()],
        uniform_baseline=round(uniform_baseline(config), 4),
    )
    if config.mask.pattern != "window":
        report.notes.append("the model's mask pattern is random; ALS is measured against the window")
    if rule is not None:
        probe_masked = any(rule.probe_head in heads for heads in config.layer_heads())
        if config.mask.mode == "additive" and probe_masked:
            report.notes.append("additive masks are hard: a masked probe head scores 1.0 by construction, so the "
                                "suggestion needs a checkpoint with multiplicative (bypassable) masks")
        report.suggested_schedule = rule.schedule(scores)
        report.rule = asdict(rule)
        differing = [block for block, (own, new) in enumerate(zip(report.masked, report.suggested_schedule))
                     if sorted(own) != sorted(new)]
        if differing:
            why = ", ".join(f"block {b}: probe ALS {scores[b, rule.probe_head]:.2f} -> "
                            f"{len(report.suggested_schedule[b])} masked" for b in differing)
            report.notes.append(
                f"the suggestion differs from this checkpoint's own schedule (* above) in {len(differing)} of "
                f"{len(report.masked)} blocks ({why}; thresholds {rule.no_heads_below:g} / {rule.all_heads_above:g}). "
                "The rule reads how local each block's probe head became in training; the checkpoint was trained "
                "with the schedule it ships (MaskConfig.schedule), so the suggestion is a schedule to train and "
                "compare, not one this model's weights were trained for")
    return report


def plot_locality(report: LocalityReport, path: str | os.PathLike[str]) -> None:
    """Heat map block x head of the ALS, masked heads outlined."""
    plt = pyplot()
    scores = np.asarray(report.scores)
    figure, axes = plt.subplots(figsize=(1.2 + 0.9 * scores.shape[1], 1.2 + 0.45 * scores.shape[0]))
    image = axes.imshow(scores, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for block, heads in enumerate(report.masked):
        for head in range(scores.shape[1]):
            axes.text(head, block, f"{scores[block, head]:.2f}", ha="center", va="center", fontsize=8,
                      color="white" if scores[block, head] < 0.6 else "black")
            if head in heads:
                axes.add_patch(plt.Rectangle((head - 0.5, block - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5))
    axes.set_xlabel("head (red: masked)")
    axes.set_ylabel("block")
    axes.set_xticks(range(scores.shape[1]))
    axes.set_yticks(range(scores.shape[0]))
    # Two short lines: one long line was clipped on a 4-head model's narrow figure.
    axes.set_title(f"Attention locality score, {report.model}\n{report.window} {report.mask_mode}, "
                   f"uniform = {report.uniform_baseline:.2f}", fontsize=8)
    figure.colorbar(image, ax=axes, fraction=0.05)
    figure.tight_layout()
    save_png(figure, path)


def write_report(report: LocalityReport, path: str | os.PathLike[str]) -> None:
    write_json(path, report.to_dict())
