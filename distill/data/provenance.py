"""Where a labels file comes from: its ``provenance`` entry, a JSON object stored as a 0-d
unicode array (docs/formats.md). Written by every teacher (``scripts/generate_teacher_labels.py``
and ``python -m distill.world``), compared by ``scripts/merge_shards.py`` and read by the trainer
(``SplitData.provenance``) to copy it into checkpoints and to pick the kinematics.

Keys: ``teacher_model``, ``teacher_revision``, ``sampling`` (settings and the seed rule),
``dataset``, ``dataset_revision``, ``t0_rule`` and ``code_version`` (revisions are None where
unknown: a local model folder or dataset copy), plus ``teacher`` (the ``--teacher`` name) in the
files written here.
"""
from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from pathlib import Path

KEYS = ("teacher_model", "teacher_revision", "sampling", "dataset",
        "dataset_revision", "t0_rule", "code_version")
ALPAMAYO = "alpamayo-r1"  # the teacher name of NVIDIA's Alpamayo-R1 (distill.teachers)


@lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe --always --dirty`` of this source tree, else the installed version."""
    source = Path(__file__).resolve().parents[2]
    if (source / ".git").exists():
        try:
            done = subprocess.run(["git", "--no-optional-locks", "describe", "--always",
                                   "--dirty", "--tags"],
                                  cwd=source, capture_output=True, text=True, timeout=30)
            if done.returncode == 0 and done.stdout.strip():
                return f"distill {done.stdout.strip()}"
        except (OSError, subprocess.TimeoutExpired):
            pass
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"distill {version('distill')}"
    except PackageNotFoundError:
        return "distill (version unknown)"


def build(teacher: str, teacher_model: str, teacher_revision: str | None, sampling: dict,
          dataset: str, dataset_revision: str | None, t0_rule: str) -> dict:
    """A provenance dict with this code's version."""
    return dict(teacher=teacher, teacher_model=teacher_model, teacher_revision=teacher_revision,
                sampling=sampling, dataset=dataset, dataset_revision=dataset_revision,
                t0_rule=t0_rule, code_version=code_version())


def t0_rule(t0_us) -> str:
    """How the samples' t0 were chosen, from their t0 values: one value for all (the data
    scripts' ``--t0-us``, the world's present) or one per sample."""
    values = {int(t) for t in t0_us}
    if len(values) == 1:
        return f"t0_us = {values.pop()} us from the clip's start for every sample"
    return "t0_us per sample (as each frames file records it)"


def to_json(provenance: dict) -> str:
    """The stored form: JSON with sorted keys (the same dict always gives the same text)."""
    missing = [k for k in KEYS if k not in provenance]
    if missing:
        raise ValueError(f"provenance lacks key '{missing[0]}'")
    return json.dumps(provenance, sort_keys=True)


def parse(text: str) -> dict:
    """The dict back from its stored text; ValueError (one line) when it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"provenance is not JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"provenance is a JSON {type(value).__name__}, not an object")
    missing = [k for k in KEYS if k not in value]
    if missing:
        raise ValueError(f"provenance lacks key '{missing[0]}'")
    return value


def is_alpamayo(provenance: dict | None) -> bool:
    """Whether labels with this provenance (None: a file without one) come from Alpamayo-R1:
    written by our ``alpamayo-r1`` teacher, or (files without ``teacher``) a model named so."""
    if provenance is None:
        return False
    if "teacher" in provenance:
        return provenance["teacher"] == ALPAMAYO
    return "alpamayo-r1" in str(provenance.get("teacher_model", "")).lower()


def difference(a: dict | None, b: dict | None) -> str | None:
    """None when equal, else the first differing key with both values (for one-line errors)."""
    if a == b:
        return None
    if a is None or b is None:
        return "one has no provenance"
    key = next(k for k in sorted({*a, *b}) if a.get(k) != b.get(k))
    return f"{key}: {json.dumps(a.get(key))} vs {json.dumps(b.get(key))}"
