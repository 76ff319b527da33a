"""ResNet trunk over stacked frames, shared by all cameras, and loading of 2-D ImageNet weights.

The trunk is a torchvision ResNet whose conv1 takes the 4 frames' RGB stacked frame-major
(12 channels) and whose avgpool/fc are removed: (N, 12, H, W) -> layer4 map (N, C, H/32, W/32).
Parameter names are torchvision's, so a torchvision state dict loads into it directly.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.checkpoint import checkpoint

_RESNETS = {
    "resnet18": torchvision.models.resnet18,
    "resnet50": torchvision.models.resnet50,
    "resnet101": torchvision.models.resnet101,
}


class ResNetTrunk(nn.Module):
    """(N, in_channels, H, W) -> (N, out_channels, ceil(H/32), ceil(W/32))."""

    def __init__(self, arch: str, in_channels: int = 12, grad_checkpointing: bool = False):
        super().__init__()
        net = _RESNETS[arch](weights=None)
        self.arch = arch
        self.grad_checkpointing = grad_checkpointing
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4)
        self.out_channels = net.fc.in_features  # 512 (resnet18) or 2048 (resnet50/101)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in (self.stem, self.layer1, self.layer2, self.layer3, self.layer4):
            if self.grad_checkpointing and self.training:
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
        return x


def _key_list(keys, limit: int = 6) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_backbone_weights(trunk: ResNetTrunk, path: str | Path) -> None:
    """Load a local torchvision ResNet state dict (e.g. ImageNet weights) into `trunk`.

    conv1 (64, 3, 7, 7) is inflated to (64, 3*F, 7, 7) by repeating it over the F frames and
    dividing by F, so a static scene (all frames equal) gives the 2-D network's activations.
    fc.* is ignored. Raises ValueError naming the file if it is not a state dict of this arch.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot load backbone weights: {e}") from e
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a torchvision state dict, got {type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    conv1 = state.get("conv1.weight")
    in_channels = trunk.conv1.in_channels
    if isinstance(conv1, torch.Tensor) and conv1.ndim == 4 and conv1.shape[1] == 3:
        frames = in_channels // 3
        state["conv1.weight"] = conv1.repeat(1, frames, 1, 1) / frames  # channel 3*f + c

    expected = trunk.state_dict()
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    wrong_shape = [f"{k} file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                   for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"missing keys: {_key_list(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_key_list(unexpected)}")
        if wrong_shape:
            problems.append(f"wrong shapes: {_key_list(wrong_shape)}")
        raise ValueError(f"{path}: not a torchvision {trunk.arch} state dict "
                         f"({'; '.join(problems)})")
    trunk.load_state_dict(state)
