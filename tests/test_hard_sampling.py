"""--hard-sampling: each epoch's training samples drawn by weight (with replacement) from the
run's seed, the same draw for both loaders, every rank and a resumed run; the weights from the
constant-velocity error; --hard-sampling-epochs; bad values refused."""
from __future__ import annotations

import contextlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from distill.data import dali
from distill.data.dataset import SampleDataset
from distill.data.sampling import EpochSampler, epoch_order, epoch_seed
from distill.train import main as train_main
from distill.training.data import make_loader
from distill.training.setup import hard_sampling_weights
from distill.training.validate import constant_velocity_errors

from test_dali import clips, split


def test_draws_follow_the_weights_and_never_pick_a_zero():
    n = 4000
    weights = np.tile([0.0, 1.0, 3.0, 4.0], n // 4)
    order = epoch_order(n, 7, weights=weights)
    assert len(order) == n
    share = np.bincount(order % 4, minlength=4) / n
    assert share[0] == 0
    # Expected 1/8, 3/8, 4/8; the binomial standard deviation is <= 0.008 at n = 4000.
    assert share[1:] == pytest.approx([1 / 8, 3 / 8, 4 / 8], abs=0.03)
    assert len(np.unique(order)) < n  # with replacement: some samples come twice
    assert np.array_equal(order, epoch_order(n, 7, weights=weights))
    assert not np.array_equal(order, epoch_order(n, 8, weights=weights))


def test_ranks_and_a_skip_cut_the_same_weighted_draw():
    n, weights = 50, np.linspace(0.1, 2.0, 50)
    whole = epoch_order(n, 3, weights=weights)
    ranks = [epoch_order(n, 3, r, 2, batch_size=5, weights=weights) for r in range(2)]
    batches = [np.concatenate([ranks[0][i:i + 5], ranks[1][i:i + 5]]) for i in range(0, 25, 5)]
    assert np.array_equal(np.concatenate(batches), whole)
    assert np.array_equal(epoch_order(n, 3, skip=17, weights=weights), whole[17:])


@pytest.mark.parametrize("weights, message", [
    (np.ones(3), r"expected shape \(4,\)"), (np.array([1.0, -1, 1, 1]), ">= 0"),
    (np.array([1.0, np.nan, 1, 1]), "finite"), (np.zeros(4), "not all 0")])
def test_bad_weights_are_refused(weights, message):
    with pytest.raises(ValueError, match=message):
        epoch_order(4, 1, weights=weights)
    with pytest.raises(ValueError, match="shuffle_seed"):
        epoch_order(4, None, weights=np.ones(4))


@pytest.mark.skipif(not dali.dali_available(), reason="NVIDIA DALI is not installed")
def test_both_loaders_visit_the_weighted_draw(world):
    dataset = SampleDataset(split(world, "val"), None)
    weights = np.arange(len(dataset), dtype=np.float64)  # sample 0 never
    want = [dataset.data.keys[i][0]
            for i in epoch_order(len(dataset), epoch_seed(2, 4), weights=weights)][3:]
    assert dataset.data.keys[0][0] not in want
    for kind in ("dali", "torch"):
        loader = make_loader(dataset, 5, 1, seed=2, kind=kind)
        loader.set_epoch(4, skip=3, weights=weights)
        assert clips(loader) == want, kind
        loader.close()


def test_weights_mix_a_uniform_draw_with_the_constant_velocity_error(world):
    data = split(world, "train")
    cfg = SimpleNamespace(dt=0.1, kinematics="distill")
    errors = constant_velocity_errors(data, cfg.dt, cfg.kinematics).mean(-1).numpy()
    notes = []
    assert hard_sampling_weights(data, 0.0, cfg, notes.append) is None and not notes
    full = hard_sampling_weights(data, 1.0, cfg, notes.append)
    assert full == pytest.approx(errors / errors.mean())
    half = hard_sampling_weights(data, 0.5, cfg, notes.append)
    assert half == pytest.approx(0.5 + 0.5 * errors / errors.mean())
    assert half.mean() == pytest.approx(1.0) and half.min() >= 0.5
    assert notes[0].startswith("hard sampling 1: each training sample drawn")


def _train(world, out, *extra):
    argv = ["--model", "baseline", "--model-size", "tiny", "--resolution", "64",
            "--batch-size", "8", "--num-workers", "0", "--max-train-samples", "24",
            "--max-val-samples", "8", "--warmup-epochs", "0", "--save-every", "1",
            "--output-dir", str(out), "--no-tensorboard", *extra]
    with contextlib.chdir(world):
        return train_main(argv)


def test_a_hard_sampled_run_trains_and_resumes_exactly(world, tmp_path, capsys):
    flags = ("--hard-sampling", "1", "--max-epochs", "2")
    assert _train(world, tmp_path / "straight", *flags) == 0
    assert "hard sampling 1: each training sample drawn" in capsys.readouterr().out
    first = tmp_path / "straight" / "baseline_seed42_epoch1.pt"
    assert _train(world, tmp_path / "resumed", *flags, "--resume", str(first)) == 0
    assert _train(world, tmp_path / "shuffled", "--max-epochs", "2") == 0
    a, b, c = (torch.load(tmp_path / run / "baseline_seed42_latest.pt", weights_only=True)
               for run in ("straight", "resumed", "shuffled"))
    assert a["config"]["hard_sampling"] == 1.0 and c["config"]["hard_sampling"] == 0.0
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # Another draw than the plain shuffle: the same seed ends with other weights.
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"])
    record = json.loads((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["epoch"] == 2


def test_hard_sampling_epochs_end_the_weighted_draws(world, tmp_path, monkeypatch, capsys):
    """--hard-sampling-epochs 1: epoch 1 is drawn by weight, epoch 2 is a plain shuffle."""
    real, drawn = EpochSampler.set_epoch, {}

    def set_epoch(self, epoch, skip=0, weights=None):
        if self.seed is not None and epoch > 0:  # the training loader, told by the trainer
            drawn[epoch] = weights is not None
        return real(self, epoch, skip, weights)

    monkeypatch.setattr(EpochSampler, "set_epoch", set_epoch)
    assert _train(world, tmp_path, "--hard-sampling", "0.5", "--hard-sampling-epochs", "1",
                  "--max-epochs", "2", "--loader", "torch") == 0
    assert drawn == {1: True, 2: False}
    assert "in epochs 1-1, then a plain shuffle" in capsys.readouterr().out


def test_hard_sampling_epochs_need_a_share(tmp_path, capsys):
    argv = ["--model", "baseline", "--offline", "--model-size", "tiny",
            "--hard-sampling-epochs", "2", "--output-dir", str(tmp_path)]
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--hard-sampling-epochs needs --hard-sampling" in err


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan"])
def test_a_share_outside_0_1_is_refused(value, capsys):
    with pytest.raises(SystemExit) as stop:
        train_main(["--model", "baseline", "--hard-sampling", value])
    assert stop.value.code == 2
    assert f"--hard-sampling: must be in [0, 1], got {value}" in capsys.readouterr().err
