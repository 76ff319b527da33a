"""The epoch's training totals, named: the loss terms summed over samples (SUM_KEYS), the samples
and the seconds. The step accumulates the sums on the device (``TrainStep.sums``); the trainer
reads them back once per epoch, summed over ranks. A run stopped mid-epoch saves its totals in
the checkpoint (``RunState.epoch_sums``: the sums, then samples and seconds, a plain list) and
the resumed run adds them once to what it trains in the rest of the epoch."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .distributed import Dist, all_reduce_sum
from .objective import SUM_KEYS


@dataclass
class EpochTotals:
    sums: torch.Tensor  # float64 (len(SUM_KEYS),): each loss term x samples, finite steps only
    samples: float
    seconds: float  # wall time of the epoch's training (the mean over ranks)

    @classmethod
    def zero(cls) -> "EpochTotals":
        return cls(torch.zeros(len(SUM_KEYS), dtype=torch.float64), 0.0, 0.0)

    @classmethod
    def from_list(cls, values: list) -> "EpochTotals":
        """From a checkpoint's ``epoch_sums`` ([] = nothing trained yet in the epoch)."""
        if not values:
            return cls.zero()
        t = torch.tensor(values, dtype=torch.float64)
        return cls(t[:len(SUM_KEYS)], float(t[len(SUM_KEYS)]), float(t[len(SUM_KEYS) + 1]))

    @classmethod
    def reduced(cls, sums: torch.Tensor, samples: int, seconds: float, d: Dist) -> "EpochTotals":
        """This rank's device ``sums``, samples and seconds, summed over the ranks (one read)."""
        local = torch.cat([sums.double(), torch.tensor([samples, seconds], dtype=torch.float64,
                                                       device=sums.device)])
        total = all_reduce_sum(local, d).cpu()
        return cls(total[:len(SUM_KEYS)], float(total[-2]), float(total[-1]) / d.world_size)

    def __add__(self, other: "EpochTotals") -> "EpochTotals":
        return EpochTotals(self.sums + other.sums, self.samples + other.samples,
                           self.seconds + other.seconds)

    def to_list(self) -> list[float]:
        return [*self.sums.tolist(), self.samples, self.seconds]

    def means(self) -> list[float]:
        """The per-sample mean of each SUM_KEYS term (the epoch's train_* values)."""
        return (self.sums / self.samples).tolist()

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds
