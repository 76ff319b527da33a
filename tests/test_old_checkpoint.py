"""A checkpoint written by an older version of the code still evaluates and resumes to the same
numbers: tests/data/old_checkpoint_08b0f76_av2_vector_epoch1.pt was written at commit 08b0f76 by

    python -m distill.benchmarks.tiny --out bench --av2-train 24 --av2-val 8 \\
        --nuscenes-train-scenes 1 --nuscenes-val-scenes 1
    python -m distill.train --benchmark argoverse2 --argoverse2-root bench/argoverse2 \\
        --input-type vector --model baseline --model-size tiny --max-epochs 2 --batch-size 8 \\
        --lr 1e-3 --warmup-epochs 0 --save-every 1 --output-dir ckpt

run in /work/scratch/oldckpt (distill.benchmarks.tiny is now distill.datasets.tiny, the same
generator); tests/data/old_checkpoint_08b0f76_av2_vector_epoch2_metrics.json is the metrics line
that run logged for epoch 2. Both CLIs run in subprocesses, as a user runs them, so that no state
of other tests in the session (threads, rollout choice, RNG) reaches them."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("av2.datasets.motion_forecasting.scenario_serialization")
from distill.datasets import tiny_argoverse2  # noqa: E402

DATA = Path(__file__).parent / "data"
OLD_CHECKPOINT = DATA / "old_checkpoint_08b0f76_av2_vector_epoch1.pt"
OLD_EPOCH2 = DATA / "old_checkpoint_08b0f76_av2_vector_epoch2_metrics.json"
OLD_ROOT = "/work/scratch/oldckpt"  # the folder the old run's data paths are absolute under
# What `python -m distill.benchmarks.tiny --av2-train 24 --av2-val 8` wrote (its default seed 0);
# the Argoverse 2 part draws from its own generator, so the nuScenes part is not needed.
AV2_TRAIN, AV2_VAL, SEED = 24, 8, 0
TIMING_KEYS = {"time_s", "samples_per_s"}  # machine-dependent: the only keys not compared


@pytest.fixture(scope="module")
def relocated(tmp_path_factory) -> Path:
    """The tiny Argoverse 2 data at ROOT/bench/argoverse2 as the old run had it under OLD_ROOT,
    and ROOT/old_epoch1.pt: the old checkpoint with its data paths moved to ROOT."""
    root = tmp_path_factory.mktemp("oldckpt")
    tiny_argoverse2.write(root / "bench" / "argoverse2", AV2_TRAIN, AV2_VAL, seed=SEED)
    state = torch.load(OLD_CHECKPOINT, weights_only=True)
    # The only change to the checkpoint: the config's absolute data paths (train_labels,
    # frames_dir, argoverse2_root, ...) name the machine that wrote it; they now name the same
    # files under ROOT. Weights, optimizer, scheduler, RNG and run state are untouched.
    state["config"] = {k: root.as_posix() + v[len(OLD_ROOT):]
                       if isinstance(v, str) and v.startswith(OLD_ROOT + "/") else v
                       for k, v in state["config"].items()}
    assert state["config"]["argoverse2_root"] == str(root / "bench" / "argoverse2")
    torch.save(state, root / "old_epoch1.pt")
    return root


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n" \
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_evaluate_an_old_checkpoint(relocated, tmp_path):
    _run("-m", "distill.evaluate", "--checkpoint", str(relocated / "old_epoch1.pt"),
         "--output-dir", str(tmp_path), "--num-workers", "0", cwd=tmp_path)
    report = json.loads((tmp_path / "eval.json").read_text())
    assert math.isfinite(report["val_ade"])
    assert report["samples"] == AV2_VAL
    # The same weights on the same val split: the val ADE the old run logged for epoch 1.
    logged = torch.load(OLD_CHECKPOINT, weights_only=True)["metrics"]["val_ade"]
    assert report["val_ade"] == pytest.approx(logged, rel=1e-6, abs=1e-6)


def test_resume_an_old_checkpoint_logs_the_old_epoch2(relocated, tmp_path):
    out = tmp_path / "ckpt"
    _run("-m", "distill.train", "--resume", str(relocated / "old_epoch1.pt"),
         "--output-dir", str(out), cwd=tmp_path)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [2]
    new, old = lines[0], json.loads(OLD_EPOCH2.read_text())
    assert set(new) == set(old)
    differ = {}
    for key in sorted(set(old) - TIMING_KEYS):
        a, b = old[key], new[key]
        same = (a == pytest.approx(b, rel=1e-6, abs=0)
                if isinstance(a, float) and isinstance(b, (int, float)) else a == b)
        if not same:
            differ[key] = (a, b)
    assert not differ, f"epoch 2 differs from the old run's (key: (old, new)): {differ}"
