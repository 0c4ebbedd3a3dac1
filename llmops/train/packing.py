"""Batches for training: samples packed into rows of ``max_len`` tokens, or one sample per row padded per batch.

Packing puts several short samples into one row (best-fit decreasing, deterministic) and gives each sample its own
``position_ids`` starting at 0, with no attention mask. transformers (>= 4.53) reads position ids that restart as
sample boundaries and builds a block-diagonal causal mask (sdpa, eager, flex) or uses varlen kernels
(flash-attention), so attention never crosses from one sample into another and packing does not change what the
model learns; it only removes the padding compute. Models whose attention code ignores this (very old
architectures) fall back to TRL's default: packed samples may attend to earlier samples of the same row.

The padded mode (``packing: false``) right-pads each batch to its longest sample and passes an attention mask.
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

from llmops.train.data import IGNORE, Sample


@dataclass
class Row:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def pack_indices(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: group sample indices into bins whose total length is at most ``capacity``."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (remaining capacity, bin index), sorted
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"sample {i} has {n} tokens, more than the row capacity {capacity}")
        pos = bisect.bisect_left(free, (n, -1))
        if pos < len(free):
            remaining, b = free.pop(pos)
            bins[b].append(i)
            remaining -= n
        else:
            b = len(bins)
            bins.append([i])
            remaining = capacity - n
        if remaining > 0:
            bisect.insort(free, (remaining, b))
    return bins


def pack(samples: list[Sample], capacity: int) -> list[Row]:
    rows = []
    for members in pack_indices([len(s) for s in samples], capacity):
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in members:
            ids += samples[i].input_ids
            labels += samples[i].labels
            positions += range(len(samples[i]))
        rows.append(Row(ids, labels, positions))
    return rows


def unpacked(samples: list[Sample]) -> list[Row]:
    return [Row(s.input_ids, s.labels, list(range(len(s)))) for s in samples]


def collate_packed(rows: list[Row], pad_id: int) -> dict:
    """Right-pad rows to the longest; padding gets its own positions (0, 1, ...) and no labels."""
    import torch

    width = max(len(r) for r in rows)
    ids, labels, positions = [], [], []
    for r in rows:
        pad = width - len(r)
        ids.append(r.input_ids + [pad_id] * pad)
        labels.append(r.labels + [IGNORE] * pad)
        positions.append(r.position_ids + list(range(pad)))
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "position_ids": torch.tensor(positions),
            "num_tokens": sum(len(r) for r in rows)}


def collate_padded(rows: list[Row], pad_id: int) -> dict:
    """One sample per row, right-padded to the longest in the batch, with an attention mask."""
    import torch

    width = max(len(r) for r in rows)
    ids, labels, mask = [], [], []
    for r in rows:
        pad = width - len(r)
        ids.append(r.input_ids + [pad_id] * pad)
        labels.append(r.labels + [IGNORE] * pad)
        mask.append([1] * len(r) + [0] * pad)
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask),
            "num_tokens": sum(len(r) for r in rows)}


class EpochSampler:
    """A shuffled order of ``n`` items that depends only on (seed, epoch), so a resumed run sees the same order."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = list(range(self.n))
        if self.shuffle:
            random.Random(self.seed * 100003 + self.epoch).shuffle(order)
        return iter(order)

    def __len__(self) -> int:
        return self.n
