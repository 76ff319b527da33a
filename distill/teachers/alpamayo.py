"""The ``alpamayo-r1`` teacher: NVIDIA's Alpamayo-R1 (10B VLA) through its own package
``alpamayo_r1`` (the NVlabs/alpamayo repository; Python 3.12, a CUDA GPU with >= 24 GB).

Imported lazily, so everything else runs without it. Per sample it sees what the package's own
loader (``load_physical_aiavdataset``) gives it: the 16 frames the devkit decodes for the
sample's (clip_id, t0_us) at the cameras' native size (4 cameras in the loader's order, which is
ours: cross-left, front-wide, cross-right, front-tele; t0-0.3 ... t0 within each), and the ego
history at t0-1.5 ... t0. The extracted frames (the student's, resized) are not used. It runs
the package's chain-of-causation rollout and trajectory sampling (one trajectory; seeded per
sample index, so a resumed run draws the same) and returns the trajectory with the reasoning
text. The package's sampling API takes one clip at a time, so a batch is labelled sample by
sample.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import provenance
from ..data.real.clips import reader
from ..data.real.source import REPO_ID, Source
from .base import TeacherError, TeacherLabel, TeacherSample

DEFAULT_MODEL = "nvidia/Alpamayo-R1-10B"
SEED_RULE = "torch.cuda.manual_seed_all(seed + the sample's index in its split), per sample"


def import_alpamayo():
    """(helper module, AlpamayoR1 class) of the alpamayo_r1 package, or a TeacherError."""
    try:
        from alpamayo_r1 import helper
        from alpamayo_r1.models.alpamayo_r1 import AlpamayoR1
    except ImportError as e:
        raise TeacherError(
            f"the alpamayo-r1 teacher needs NVIDIA's alpamayo_r1 package (the NVlabs/alpamayo "
            f"repository, installed in its Python 3.12 environment), which does not import here "
            f"({e}); --teacher world labels the built-in world without it") from None
    return helper, AlpamayoR1


def cuda_available() -> bool:
    return torch.cuda.is_available()


class AlpamayoTeacher:
    name = provenance.ALPAMAYO
    needs_history = True

    def __init__(self, source: Source, model: str = DEFAULT_MODEL,
                 model_revision: str | None = None, device: str = "cuda", seed: int = 42,
                 top_p: float = 0.98, temperature: float = 0.6,
                 max_generation_length: int = 256):
        """``source``: the opened dataset (``distill.data.real.source.opened``) its frames are
        decoded from."""
        self.helper, model_class = import_alpamayo()
        if not device.startswith("cuda") or not cuda_available():
            why = "none is visible" if not cuda_available() else f"got --device {device}"
            raise TeacherError(f"the alpamayo-r1 teacher needs a CUDA GPU (>= 24 GB for "
                               f"bfloat16); {why}")
        self.device, self.seed, self.source, self.model_id = device, seed, source, model
        self.sampling = dict(top_p=top_p, temperature=temperature, num_traj_samples=1,
                             max_generation_length=max_generation_length, return_extra=True)
        revision = {"revision": model_revision} if model_revision else {}
        try:
            self.model = model_class.from_pretrained(model, dtype=torch.bfloat16,
                                                     **revision).to(device)
            self.processor = self.helper.get_processor(self.model.tokenizer)
        except OSError as e:  # not found, not cached, no connection
            offline = (" (a local or cached dataset is read offline, and so is the model: "
                       f"download it first, hf download {model}, or pass --model DIR)"
                       if source.offline else "")
            raise TeacherError(f"--model {model}: cannot be loaded{offline}: "
                               f"{' '.join(str(e).split())}") from None
        # the commit transformers resolved the weights at (None for a local folder)
        self.model_revision = model_revision or getattr(getattr(self.model, "config", None),
                                                        "_commit_hash", None)
        self.clips = reader(source)

    def images(self, sample: TeacherSample) -> torch.Tensor:
        """uint8 (16, 3, H, W) RGB at native size: image 4 * camera + frame."""
        frames, _ = self.clips.frames(*sample.key)  # (4, 4, H, W, 3)
        return torch.from_numpy(frames).flatten(0, 1).permute(0, 3, 1, 2)

    def inputs(self, sample: TeacherSample) -> dict:
        """The package's model inputs for one sample (its images in a chat message; the ego
        history with batch dims (1, 1, 16, ...))."""
        tokens = self.processor.apply_chat_template(
            self.helper.create_message(self.images(sample)), tokenize=True,
            add_generation_prompt=False, continue_final_message=True, return_dict=True,
            return_tensors="pt")
        return self.helper.to_device({
            "tokenized_data": tokens,
            "ego_history_xyz": torch.from_numpy(sample.history_xyz)[None, None],
            "ego_history_rot": torch.from_numpy(sample.history_rot)[None, None],
        }, self.device)

    @torch.no_grad()
    def label(self, samples: list[TeacherSample]) -> list[TeacherLabel]:
        labels = []
        for sample in samples:
            torch.cuda.manual_seed_all(self.seed + sample.index)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                xyz, rot, extra = self.model.sample_trajectories_from_data_with_vlm_rollout(
                    data=self.inputs(sample), **self.sampling)
            # (batch, trajectory sets, samples, 64, ...): the one trajectory drawn
            labels.append(TeacherLabel(
                xyz[0, 0, 0].float().cpu().numpy(), rot[0, 0, 0].float().cpu().numpy(),
                str(np.asarray(extra["cot"], dtype=object).reshape(-1)[0]).strip()))
        return labels

    def provenance(self, t0_rule: str) -> dict:
        sampling = {k: v for k, v in self.sampling.items() if k != "return_extra"}
        sampling.update(seed=self.seed, seed_rule=SEED_RULE, autocast="bfloat16")
        return provenance.build(self.name, self.model_id, self.model_revision, sampling, REPO_ID,
                                self.source.known_revision, t0_rule)
