"""The students: sizes (on the meta device), output shapes, gradients, weight inflation and
gradient checkpointing."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from distill.models import (MODEL_SIZES, BaselineStudent, ModelConfig, ReasoningStudent,
                            build_student, get_model_config)
from distill.kinematics import ActionNormalization
from distill.losses import position_loss
from distill.models.backbone import ResNetTrunk, load_backbone_weights
from distill.models.plan import plan_from_inputs
from distill.models.student import DIRECT_SCALE, history_input
from distill.training.objective import LossWeights, loss_terms


def _count(kind: str, size: str, **overrides) -> int:
    with torch.device("meta"):
        model = build_student(kind, get_model_config(size, **overrides))
    return sum(p.numel() for p in model.parameters())


def _inputs(B: int = 2, res: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, 4, 12, res, res, generator=g),
            torch.randn(B, 16, 4, generator=g),
            torch.rand(B, generator=g) * 20)


@pytest.mark.parametrize("kind", ["baseline", "reasoning"])
@pytest.mark.parametrize("size,low,high", [("110m", 104e6, 110e6), ("500m", 470e6, 500e6)])
def test_parameter_counts(kind, size, low, high):
    assert low <= _count(kind, size) <= high
    assert low <= _count(kind, size, discrete_actions=True, num_modes=6) <= high


def test_users_guide_snippet():
    with torch.device("meta"):
        cfg = get_model_config('500m')
        model = ReasoningStudent.from_model_config(cfg)
        params = sum(p.numel() for p in model.parameters())
    assert 470e6 <= params <= 500e6 and cfg.grad_checkpointing


def test_configs_are_validated():
    assert MODEL_SIZES == ("tiny", "110m", "500m")
    with pytest.raises(ValueError, match="valid sizes: tiny, 110m, 500m"):
        get_model_config("1b")
    with pytest.raises(ValueError, match="discrete_actions needs output 'unicycle'"):
        get_model_config("tiny", output="direct", discrete_actions=True)
    with pytest.raises(ValueError, match="aux_xy needs output 'unicycle'"):
        get_model_config("tiny", output="direct", aux_xy=True)
    with pytest.raises(ValueError, match="num_modes must be >= 1"):
        get_model_config("tiny", num_modes=0)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        get_model_config("tiny", num_heads=3)
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        get_model_config("tiny", horizont=12)
    with pytest.raises(ValueError, match="valid kinds"):
        build_student("huge", get_model_config("tiny"))
    cfg = get_model_config("tiny", horizon=12, dt=0.5)
    assert isinstance(cfg, ModelConfig) and (cfg.name, cfg.horizon, cfg.dt) == ("tiny", 12, 0.5)


@pytest.mark.parametrize("overrides,key,shape", [
    (dict(), "actions", (2, 1, 64, 2)),
    (dict(num_modes=6), "actions", (2, 6, 64, 2)),
    (dict(discrete_actions=True, num_action_bins=16), "action_logits", (2, 1, 64, 2, 16)),
    (dict(discrete_actions=True, num_action_bins=16, num_modes=6), "action_logits",
     (2, 6, 64, 2, 16)),
    (dict(output="direct"), "direct", (2, 1, 64, 4)),
    (dict(output="direct", num_modes=6, horizon=12), "direct", (2, 6, 12, 4)),
])
def test_forward_shapes(overrides, key, shape):
    torch.manual_seed(0)
    model = BaselineStudent.from_model_config(get_model_config("tiny", **overrides))
    out = model(*_inputs())
    assert set(out) == {key, "mode_logits"}
    assert out[key].shape == shape
    assert out["mode_logits"].shape == shape[:2]
    assert all(v.dtype == torch.float32 and v.isfinite().all() for v in out.values())


def test_reasoning_embedding_and_gradients_reach_conv1():
    torch.manual_seed(0)
    model = ReasoningStudent.from_model_config(get_model_config("tiny"))
    out = model(*_inputs(res=96))  # any resolution the ResNet accepts
    assert out["embedding"].shape == (2, 384)
    assert out["actions"].shape == (2, 1, 64, 2)
    (out["actions"].square().mean() + out["embedding"].square().mean()).backward()
    grad = model.trunk.conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_history_input():
    yaw = torch.tensor([[0.3, -1.2]])
    c, s = yaw.cos(), yaw.sin()
    rot = torch.zeros(1, 2, 3, 3)
    rot[..., 0, 0], rot[..., 0, 1], rot[..., 1, 0], rot[..., 1, 1], rot[..., 2, 2] = c, -s, s, c, 1
    xyz = torch.tensor([[[1.0, 2.0, 0.5], [-3.0, 4.0, 0.0]]])
    expected = torch.stack([xyz[..., 0], xyz[..., 1], s, c], dim=-1)
    torch.testing.assert_close(history_input(xyz, rot), expected)


def test_backbone_weights_are_inflated_over_frames(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, path)
    trunk = ResNetTrunk("resnet18", in_channels=12)
    load_backbone_weights(trunk, path)
    w2d = state["conv1.weight"]  # (64, 3, 7, 7)
    torch.testing.assert_close(trunk.conv1.weight, w2d.repeat(1, 4, 1, 1) / 4)
    torch.testing.assert_close(trunk.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    image = torch.randn(2, 3, 32, 32)
    static = image.repeat(1, 4, 1, 1)  # 4 identical frames, frame-major
    with torch.no_grad():
        torch.testing.assert_close(trunk.conv1(static),
                                   F.conv2d(image, w2d, stride=2, padding=3),
                                   atol=1e-5, rtol=1e-5)


def test_wrong_backbone_weights_name_the_file(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match=r"resnet50\.pth: not a torchvision resnet18 state dict"
                                         r" \(.*unexpected keys: .*wrong shapes: "):
        load_backbone_weights(ResNetTrunk("resnet18"), path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.pth: cannot load backbone weights"):
        load_backbone_weights(ResNetTrunk("resnet18"), garbage)


def test_grad_checkpointing_matches():
    torch.manual_seed(0)
    plain = ReasoningStudent(get_model_config("tiny", num_modes=2))
    ckpt = ReasoningStudent(get_model_config("tiny", num_modes=2, grad_checkpointing=True))
    ckpt.load_state_dict(plain.state_dict())
    inputs = _inputs(res=64, seed=1)
    results = []
    for model in (plain, ckpt):
        model.train()
        out = model(*inputs)
        loss = out["actions"].square().mean() + out["embedding"].square().mean() \
            + out["mode_logits"].logsumexp(1).mean()
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=name)


@pytest.mark.parametrize("kind", ["baseline", "reasoning"])
def test_the_aux_xy_head_gives_the_trunk_a_gradient_at_the_start(kind):
    """--aux-xy-weight: a direct (x, y) head beside the actions, in training only. The action
    head starts at zero, so at the first step no gradient of the trajectory losses reaches the
    decoder or the trunk; the aux head's position loss does (docs/learning.md)."""
    cfg = get_model_config("tiny", aux_xy=True)
    torch.manual_seed(0)
    model = build_student(kind, cfg).train()
    scene, history, v0 = _inputs()
    stats = ActionNormalization(torch.zeros(2), torch.ones(2))
    plan = plan_from_inputs(model, scene, history, v0, cfg, stats)
    assert plan.heads["aux_xy"].shape == (2, 1, 64, 2)
    gt = torch.randn(2, 64, 3) * 5
    batch = {"trajectory_xyz": gt, "trajectory_yaw": torch.zeros(2, 64),
             "action_target": torch.randn(2, 64, 2),
             "coc_embedding": torch.randn(2, 384), "coc_id": torch.arange(2)}
    weights = dict(yaw=0.3, action=0.5, reasoning=0.0, temperature=0.07, label_smoothing=0.0)
    without = loss_terms(plan, batch, cfg, stats, LossWeights(**weights))
    with_aux = loss_terms(plan, batch, cfg, stats, LossWeights(**weights, aux_xy=2.0))
    aux = position_loss(plan.heads["aux_xy"][:, 0] * DIRECT_SCALE, gt[..., :2])
    torch.testing.assert_close(with_aux["loss"], without["loss"] + 2.0 * aux)
    trunk = model.trunk.conv1.weight
    (grad_without,) = torch.autograd.grad(without["loss"], trunk, retain_graph=True,
                                          allow_unused=True)
    (grad_with,) = torch.autograd.grad(with_aux["loss"], trunk)
    assert grad_without is None or not grad_without.any()
    assert grad_with.abs().sum() > 0
    assert "aux_xy" not in model.eval()(scene, history, v0)  # never in inference or export
