"""TensorBoard's live curves of a run (distill/training/tensorboard.py), read back with
TensorBoard's own reader: the tags and steps of a run, a resumed run that goes on without
duplicated steps (the rerun epoch's old events purged), and --no-tensorboard."""
from __future__ import annotations

import sys

import pytest

from distill.train import main as train_main
from distill.training.config import INVOCATION_ONLY, RunConfig
from distill.training.objective import SUM_KEYS

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")

TINY = ["--model", "baseline", "--offline", "--model-size", "tiny", "--resolution", "32",
        "--max-train-samples", "16", "--max-val-samples", "8", "--batch-size", "8",
        "--num-workers", "0", "--save-every", "1", "--keep-last", "0", "--grad-clip", "1.0"]
TRAIN_TAGS = {f"train/{k}" for k in SUM_KEYS} | {
    "train/lr", "train/reasoning_weight", "train/samples_per_s", "train/grad_norm",
    "train/nonfinite_steps"}
VAL_TAGS = {"epoch", "val/loss", "val/ade", "val/fde", "val/minADE_6"}


def _events(out, purge: bool = True):
    acc = event_accumulator.EventAccumulator(
        str(out / "tensorboard" / "baseline_seed42"),
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0},
        purge_orphaned_data=purge)
    acc.Reload()
    return acc


def _steps(acc, tag):
    return [e.step for e in acc.Scalars(tag)]


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb")
    assert train_main([*TINY, "--max-epochs", "2", "--output-dir", str(out)]) == 0
    return out


def test_tags_and_steps_of_a_run(two_epochs):
    acc = _events(two_epochs)
    tags = set(acc.Tags()["scalars"])
    assert TRAIN_TAGS | VAL_TAGS <= tags
    # the offline world labels its scenarios: one val ADE curve per scenario seen
    assert any(t.startswith("val/scenario_ade/") for t in tags)
    # 16 samples / batch 8: 2 optimizer steps per epoch, logged at the epoch's last step
    assert _steps(acc, "train/loss") == [2, 4]
    assert _steps(acc, "val/ade") == [2, 4]
    assert [e.value for e in acc.Scalars("epoch")] == [1, 2]
    assert {"images/top_down", "images/front_camera"} <= set(acc.Tags()["images"])
    assert [e.step for e in acc.Images("images/top_down")] == [2, 4]


def test_resume_purges_the_steps_after_the_checkpoint(two_epochs):
    # Epoch 2 runs again from epoch 1's checkpoint: its first events must be dropped.
    ckpt = two_epochs / "baseline_seed42_epoch1.pt"
    assert train_main(["--resume", str(ckpt), "--max-epochs", "2",
                       "--output-dir", str(two_epochs)]) == 0
    assert len(list((two_epochs / "tensorboard" / "baseline_seed42").glob("events.*"))) == 2
    acc = _events(two_epochs)
    for tag in TRAIN_TAGS | VAL_TAGS:
        steps = _steps(acc, tag)
        assert steps == sorted(set(steps)), (tag, steps)  # strictly increasing
    assert _steps(acc, "val/ade") == [2, 4]
    assert [e.step for e in acc.Images("images/top_down")] == [2, 4]
    # the files do hold epoch 2 twice: it is the resumed writer's purge_step that drops one
    assert _steps(_events(two_epochs, purge=False), "val/ade") == [2, 4, 4]


def test_no_tensorboard_writes_no_folder(tmp_path):
    assert train_main([*TINY, "--max-epochs", "1", "--no-tensorboard",
                       "--output-dir", str(tmp_path)]) == 0
    assert not (tmp_path / "tensorboard").exists()
    assert "no_tensorboard" in INVOCATION_ONLY
    assert "no_tensorboard" not in RunConfig.field_names()


def test_without_the_plots_packages_the_curves_go_on(tmp_path, monkeypatch, capsys):
    """tensorboard installed but shapely (or matplotlib) not, as on a GPU machine's stock image:
    one line, the curves without images, and the epoch's checkpoint (images came before it)."""
    import distill
    import distill.closed_loop
    monkeypatch.setitem(sys.modules, "shapely", None)  # `import shapely` fails
    for name in ("distill.plots", "distill.closed_loop.metrics"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delattr(distill, "plots", raising=False)
    monkeypatch.delattr(distill.closed_loop, "metrics", raising=False)
    assert train_main([*TINY, "--max-epochs", "1", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "tensorboard: no trajectory images (shapely is not installed" in out
    acc = _events(tmp_path)
    assert _steps(acc, "val/ade") == [2] and acc.Tags()["images"] == []
    assert (tmp_path / "baseline_seed42_epoch1.pt").is_file()
