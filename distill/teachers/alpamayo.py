"""The ``alpamayo-r1`` teacher: NVIDIA's Alpamayo-R1 (10B VLA) through its own package
``alpamayo_r1`` (the NVlabs/alpamayo repository; Python 3.12, a CUDA GPU with >= 24 GB).

Imported lazily, so everything else runs without it. Per sample it sees the 16 extracted frames
(4 cameras x 4 times) and the ego history, runs the package's chain-of-causation rollout and
trajectory sampling (one trajectory; seeded per sample index, so a resumed run draws the same)
and returns the trajectory with the reasoning text. The package's sampling API takes one clip at
a time, so a batch is labelled sample by sample.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.readers import read_frames
from .base import TeacherError, TeacherLabel, TeacherSample

DEFAULT_MODEL = "nvidia/Alpamayo-R1-10B"


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
    name = "alpamayo-r1"
    needs_history = True

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cuda", seed: int = 42,
                 top_p: float = 0.98, temperature: float = 0.6, max_generation_length: int = 256):
        self.helper, model_class = import_alpamayo()
        if not device.startswith("cuda") or not cuda_available():
            why = "none is visible" if not cuda_available() else f"got --device {device}"
            raise TeacherError(f"the alpamayo-r1 teacher needs a CUDA GPU (>= 24 GB for "
                               f"bfloat16); {why}")
        self.device, self.seed = device, seed
        self.sampling = dict(top_p=top_p, temperature=temperature, num_traj_samples=1,
                             max_generation_length=max_generation_length, return_extra=True)
        self.model = model_class.from_pretrained(model, dtype=torch.bfloat16).to(device)
        self.processor = self.helper.get_processor(self.model.tokenizer)

    def inputs(self, sample: TeacherSample) -> dict:
        """The package's model inputs for one sample (its frames, RGB (16, 3, H, W) uint8
        camera-major, in a chat message; the ego history with batch dims (1, 1, 16, ...))."""
        frames = torch.from_numpy(read_frames(sample.frames_path)["frames"])  # (4, 4, H, W, 3)
        images = frames.flatten(0, 1).permute(0, 3, 1, 2)  # (16, 3, H, W)
        tokens = self.processor.apply_chat_template(
            self.helper.create_message(images), tokenize=True, add_generation_prompt=False,
            continue_final_message=True, return_dict=True, return_tensors="pt")
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
