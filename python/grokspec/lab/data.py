"""The data of a seed-batched training run: splits, batches, the probe set
and representation mixing, all with a leading seed axis S."""

from __future__ import annotations

from collections.abc import Callable

import torch

from grokspec.lab.config import TrainConfig
from grokspec.lab.seeding import BATCH_STREAM, MIXING_STREAM, generators
from grokspec.lab.tasks import Dataset, split_indices

__all__ = ["SeedBatchedData"]

#: The label-shuffling stream, after seeding's init, batch and mixing streams.
_LABEL_STREAM = 4


class SeedBatchedData:
    """Train/test splits per seed, stacked on the device, and the seeded
    batch sampler and mixer. The generators are the run's resumable state."""

    def __init__(self, config: TrainConfig, dataset: Dataset, seeds: list[int], device: torch.device):
        self.config = config
        self.device = device
        splits = [split_indices(len(dataset), config.train_fraction, s) for s in seeds]
        self.train_x = torch.stack([dataset.inputs[tr] for tr, _ in splits]).to(device)  # (S, Ntrain, 2)
        self.train_y = torch.stack([dataset.labels[tr] for tr, _ in splits]).to(device)  # (S, Ntrain)
        self.test_x = torch.stack([dataset.inputs[te] for _, te in splits]).to(device)  # (S, Ntest, 2)
        self.test_y = torch.stack([dataset.labels[te] for _, te in splits]).to(device)  # (S, Ntest)
        if config.shuffle_labels != "none":
            self._shuffle_labels(config.shuffle_labels, seeds)
        self.probe_x = self.train_x[:, : config.probe_size]  # the first examples of each split
        n_train = self.train_x.shape[1]
        self.batch_size = n_train if config.batch_size == 0 or config.batch_size >= n_train else config.batch_size
        self.batch_generators = generators(seeds, BATCH_STREAM)
        self.mixing_generators = generators(seeds, MIXING_STREAM)

    def _shuffle_labels(self, which: str, seeds: list[int]) -> None:
        """Permutes one split's labels per seed (a negative control: with
        shuffled training labels there is no rule to generalize)."""
        labels = self.train_y if which == "train" else self.test_y
        orders = [torch.randperm(labels.shape[1], generator=g) for g in generators(seeds, _LABEL_STREAM)]
        shuffled = torch.stack([row[order.to(row.device)] for row, order in zip(labels, orders)])
        if which == "train":
            self.train_y = shuffled
        else:
            self.test_y = shuffled

    def sample_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch per seed, (S, B, 2) inputs and (S, B) labels; the whole
        training split when the batch covers it."""
        n_train = self.train_x.shape[1]
        if self.batch_size == n_train:
            return self.train_x, self.train_y
        rows = torch.stack([torch.randperm(n_train, generator=g)[: self.batch_size] for g in self.batch_generators])
        rows = rows.to(self.device)  # (S, B)
        x = torch.gather(self.train_x, 1, rows.unsqueeze(-1).expand(-1, -1, 2))
        y = torch.gather(self.train_y, 1, rows)
        return x, y

    def mixer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Representation mixing: each example's z is replaced, with
        probability mixing_fraction, by another example's z (a random
        derangement of the batch)."""
        fraction = self.config.mixing_fraction

        def mix(z: torch.Tensor) -> torch.Tensor:  # z: (S, B, d)
            _, b, _ = z.shape
            sources, masks = [], []
            for g in self.mixing_generators:
                order = torch.randperm(b, generator=g)
                # Shifting a random permutation by one place makes a single
                # b-cycle: nobody keeps their own representation.
                derangement = torch.empty(b, dtype=torch.long)
                derangement[order] = order.roll(-1)
                sources.append(derangement)
                masks.append(torch.rand(b, generator=g) < fraction)
            source = torch.stack(sources).to(z.device)  # (S, B)
            mask = torch.stack(masks).to(z.device).unsqueeze(-1)  # (S, B, 1)
            mixed = torch.gather(z, 1, source.unsqueeze(-1).expand_as(z))
            return torch.where(mask, mixed, z)

        return mix
