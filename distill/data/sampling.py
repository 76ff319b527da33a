"""Which samples a loader visits, in which order: one definition for every loader (torch and
DALI), so both visit the same samples in the same order for a run's seed and epoch."""
from __future__ import annotations

import numpy as np
import torch


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of ``epoch`` of a run with ``seed``: one seed per epoch, so a resumed
    run sees the same order as a straight one."""
    return seed * 100_003 + epoch


def epoch_order(n: int, shuffle_seed: int | None = None, rank: int = 0, world_size: int = 1,
                drop_last: bool = False, batch_size: int = 1, skip: int = 0,
                weights: np.ndarray | None = None) -> np.ndarray:
    """int64 indices of the samples rank ``rank`` of ``world_size`` visits in one pass over
    ``n`` samples, in order.

    The global order is the dataset order (``shuffle_seed`` None) or the permutation that
    torch's RandomSampler draws from a generator seeded with ``shuffle_seed``. It is cut into
    global batches of ``world_size x batch_size``; rank r takes rows r*b ... (r+1)*b - 1 of
    each, so every rank's batch i comes from global batch i. The last, incomplete global batch
    is dropped with ``drop_last`` (every rank then runs the same number of steps) or else
    shared out in contiguous pieces of ceil(m / world_size): either way no sample is visited
    twice, and without ``drop_last`` every sample is visited exactly once.

    ``skip`` drops the first ``skip`` samples of the global order before it is cut: a run
    resumed mid-epoch (after SIGTERM) goes on with the samples it had not seen, at any world
    size.

    ``weights`` (``(n,)``, >= 0, with ``shuffle_seed``): the global order is instead ``n``
    draws with replacement, sample i with probability ``weights[i] / weights.sum()``, from the
    same seeded generator (``--hard-sampling``): a sample may then come twice in a pass, or
    not at all.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world size {world_size})")
    generator = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
    if weights is not None:
        if generator is None:
            raise ValueError("epoch_order: weights draw a shuffled order; give a shuffle_seed")
        order = torch.multinomial(draw_probabilities(weights, n), n, replacement=True,
                                  generator=generator).numpy()
    elif generator is None:
        order = np.arange(n, dtype=np.int64)
    else:
        order = torch.randperm(n, generator=generator).numpy()
    order = order[skip:]
    n = len(order)
    step = world_size * batch_size
    full = n // step * step
    mine = order[:full].reshape(-1, world_size, batch_size)[:, rank].reshape(-1)
    if drop_last:
        return mine
    rest = order[full:]
    piece = -(-len(rest) // world_size)
    return np.concatenate([mine, rest[rank * piece:(rank + 1) * piece]])


def draw_probabilities(weights: np.ndarray, n: int) -> torch.Tensor:
    """``weights`` as float64 probabilities of drawing each of ``n`` samples; ValueError when
    they are not ``n`` finite values >= 0 with a positive sum."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    if w.shape != (n,):
        raise ValueError(f"sampling weights: expected shape ({n},), got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or not float(w.sum()) > 0:
        raise ValueError("sampling weights must be finite, >= 0 and not all 0")
    return w / w.sum()


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


class EpochSampler(torch.utils.data.Sampler):
    """The torch DataLoader's sampler: ``epoch_order`` of the epoch ``set_epoch`` was told (as
    ``DistributedSampler.set_epoch``), shuffled from ``epoch_seed(seed, epoch)`` (``seed``
    None: dataset order), for one ``rank`` of ``world_size``."""

    def __init__(self, n: int, seed: int | None = None, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, batch_size: int = 1):
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.drop_last, self.batch_size = drop_last, batch_size
        self.set_epoch(0)

    def set_epoch(self, epoch: int, skip: int = 0, weights: np.ndarray | None = None) -> None:
        """The next pass visits ``epoch``'s order without its first ``skip`` global samples
        (drawn by ``weights`` when given: ``epoch_order``)."""
        self.order = epoch_order(self.n, None if self.seed is None else epoch_seed(self.seed, epoch),
                                 self.rank, self.world_size, self.drop_last, self.batch_size, skip,
                                 weights)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        return iter(self.order.tolist())
