"""The algorithmic tasks that grok: (a ∘ b) mod p and S5 composition.

Every example is two input tokens and one class label; the whole table of
pairs is the dataset, and a seeded permutation splits it into train and test.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where datasets are built: a scan that needs none skips it
    import torch

__all__ = ["TASKS", "Dataset", "make_dataset", "split_indices", "is_prime"]

#: Task names: modular addition, subtraction, multiplication, division, and
#: composition in the symmetric group S5.
TASKS = ("add", "sub", "mul", "div", "s5")


@dataclass(frozen=True)
class Dataset:
    """All pairs of a task. ``inputs[i] = (a, b)`` as token ids, ``labels[i] = a ∘ b``."""

    task: str
    inputs: torch.Tensor  # (N, 2) int64
    labels: torch.Tensor  # (N,) int64
    #: Number of distinct tokens, which is also the number of classes.
    vocab_size: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % k for k in range(2, int(n**0.5) + 1))


def make_dataset(task: str, p: int = 97) -> Dataset:
    """Every pair of the task's operands. For ``div`` the divisor ranges over
    1..p-1 and ``p`` must be prime (so that every divisor has an inverse);
    ``s5`` ignores ``p`` (120 permutations)."""
    import torch

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if task == "s5":
        return _s5()
    if not isinstance(p, int) or isinstance(p, bool) or p < 2:
        raise ValueError(f"p must be an integer >= 2, got {p!r}")
    if task == "div" and not is_prime(p):
        raise ValueError(f"division mod p needs a prime p (every divisor must be invertible); {p} is not prime")
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    if task == "div":
        keep = b != 0
        a, b = a[keep], b[keep]
        inverse = torch.tensor([pow(int(v), p - 2, p) if v else 0 for v in range(p)])
        labels = (a * inverse[b]) % p
    else:
        op = {"add": operator.add, "sub": operator.sub, "mul": operator.mul}[task]
        labels = op(a, b) % p
    return Dataset(task, torch.stack([a, b], dim=1), labels, p)


def _s5() -> Dataset:
    import torch

    permutations = list(itertools.permutations(range(5)))
    index = {perm: i for i, perm in enumerate(permutations)}
    pairs, labels = [], []
    for i, left in enumerate(permutations):
        for j, right in enumerate(permutations):
            # (left ∘ right)(k) = left(right(k))
            composed = tuple(left[right[k]] for k in range(5))
            pairs.append((i, j))
            labels.append(index[composed])
    return Dataset("s5", torch.tensor(pairs), torch.tensor(labels), len(permutations))


def split_indices(size: int, train_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of ``range(size)`` into (train, test) indices."""
    import torch

    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train fraction must lie strictly between 0 and 1, got {train_fraction}")
    n_train = round(train_fraction * size)
    if n_train < 1 or n_train >= size:
        raise ValueError(f"train fraction {train_fraction} of {size} examples leaves an empty train or test set")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(size, generator=generator)
    return order[:n_train], order[n_train:]
