"""distill.multimodal (mode selection, WTA and Laplace-mixture NLL), the K-mode student on each
input type, the trainer's K-mode step and the --num-modes flag on the built-in world."""
from __future__ import annotations

import contextlib
import json
import math

import pytest
import torch
from torch import distributions as D

from distill.kinematics import ActionNormalization
from distill.losses import position_loss
from distill.models import build_student, get_model_config
from distill.multimodal import (best_mode, laplace_mixture_nll, mode_cross_entropy,
                                most_probable, take_mode)
from distill.train import main as train_main
from distill.models.plan import Plan, student_inputs, student_plan
from distill.training.objective import LossWeights, loss_terms
from distill.training.validate import sample_metrics


def test_best_mode_take_mode_and_most_probable():
    gt = torch.zeros(2, 5, 2)
    pred = torch.stack([torch.full((5, 2), v) for v in (3.0, 0.5, -1.0)]).repeat(2, 1, 1, 1)
    pred[1, 2] = 0.1  # sample 1: mode 2 is closest
    assert best_mode(pred, gt).tolist() == [1, 2]
    assert torch.equal(take_mode(pred, torch.tensor([0, 2])), torch.stack([pred[0, 0], pred[1, 2]]))
    assert most_probable(torch.tensor([[0.0, 2.0, 1.0], [5.0, 5.0, 1.0]])).tolist() == [1, 0]
    assert mode_cross_entropy(torch.randn(4, 1), torch.zeros(4, dtype=torch.long)) == 0
    with pytest.raises(ValueError, match="pred_xy \\(B, K, T, 2\\)"):
        best_mode(pred[:, 0], gt)


def test_laplace_mixture_nll_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    B, K, T = 3, 4, 7
    f64 = dict(generator=g, dtype=torch.float64)
    mu, gt = torch.randn(B, K, T, 2, **f64), torch.randn(B, T, 2, **f64)
    scale = torch.rand(B, K, T, 2, **f64) + 0.1
    logits = torch.randn(B, K, **f64)
    mixture = D.MixtureSameFamily(D.Categorical(logits=logits),
                                  D.Independent(D.Laplace(mu, scale), 2))
    want = -mixture.log_prob(gt).mean() / (2 * T)
    torch.testing.assert_close(laplace_mixture_nll(mu, scale, logits, gt), want)


def _fit(loss_name: str, K: int, steps: int = 120):
    """Free trajectories for one input whose future is +1 m or -1 m sideways, 50/50."""
    torch.manual_seed(0)
    T = 4
    modes = torch.nn.Parameter(torch.randn(K, T, 2) * 0.1)
    logits = torch.nn.Parameter(torch.zeros(K))
    raw_scale = torch.nn.Parameter(torch.zeros(K, T, 2))
    opt = torch.optim.Adam([modes, logits, raw_scale], lr=0.1)
    gt = torch.zeros(16, T, 2)
    gt[:8, :, 1], gt[8:, :, 1] = 1.0, -1.0
    for _ in range(steps):
        pred = modes.expand(16, -1, -1, -1)
        lg = logits.expand(16, -1)
        if loss_name == "wta":
            best = best_mode(pred, gt)
            loss = position_loss(take_mode(pred, best), gt) + mode_cross_entropy(lg, best)
        else:
            scale = torch.nn.functional.softplus(raw_scale).expand(16, -1, -1, -1) + 0.01
            loss = laplace_mixture_nll(pred, scale, lg, gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return modes.detach(), logits.detach().softmax(-1)


@pytest.mark.parametrize("loss_name", ["wta", "nll"])
def test_two_modes_find_both_futures_where_one_mode_averages(loss_name):
    modes, probs = _fit(loss_name, K=2)
    ends = sorted(modes[:, -1, 1].tolist())
    assert ends == pytest.approx([-1.0, 1.0], abs=0.1)
    assert probs.tolist() == pytest.approx([0.5, 0.5], abs=0.1)
    single, _ = _fit(loss_name, K=1)
    # One mode sits between the futures: at their mean under WTA's (quadratic near zero)
    # smooth L1, anywhere between them under the Laplace likelihood (any median fits).
    assert abs(single[0, -1, 1]) < (0.2 if loss_name == "wta" else 1.05)


def _batch(input_type: str, B: int = 2, S: int = 16, T: int = 64):
    g = torch.Generator().manual_seed(1)
    history = torch.zeros(B, S, 3)
    history[..., 0] = torch.arange(S) - (S - 1.0)  # 10 m/s along x at dt = 0.1
    batch = {"ego_history_xyz": history, "ego_history_rot": torch.eye(3).expand(B, S, 3, 3),
             "trajectory_xyz": torch.randn(B, T, 3, generator=g) * 5,
             "trajectory_yaw": torch.randn(B, T, generator=g) * 0.1}
    if input_type == "camera":
        batch["frames"] = torch.randn(B, 4, 12, 32, 32, generator=g)
    elif input_type == "raster":
        batch["raster"] = torch.randn(B, 3, 64, 64, generator=g)
    else:
        batch["polylines"] = torch.randn(B, 20, 8, 10, generator=g)
        mask = torch.rand(B, 20, 8, generator=g) > 0.3
        mask[:, 15:] = False  # padded polylines
        batch["polyline_mask"] = mask
    return batch


@pytest.mark.parametrize("input_type,output,loss_name", [
    ("camera", "unicycle", "wta"), ("raster", "direct", "nll"), ("vector", "unicycle", "nll")])
def test_six_mode_student_predicts_and_trains_on_each_input(input_type, output, loss_name):
    cfg = get_model_config("tiny", num_modes=6, input_type=input_type, output=output,
                           predict_scale=loss_name == "nll", polyline_features=10,
                           **({} if input_type == "camera" else
                              {"history_steps": 16, "horizon": 64, "dt": 0.1}))
    model = build_student("baseline", cfg)
    batch = _batch(input_type)
    stats = ActionNormalization(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.05]))
    pred = student_plan(model, batch, cfg, stats)
    assert pred.modes_xy.shape == (2, 6, 64, 2) and pred.modes_yaw.shape == (2, 6, 64)
    assert pred.xy.shape == (2, 64, 2) and pred.probs.shape == (2, 6)
    top = pred.heads["mode_logits"].argmax(-1)
    assert torch.equal(pred.xy, pred.modes_xy[torch.arange(2), top])
    weights = LossWeights(0.3, 0.1, 0.0, 0.07, 0.1, loss_name)
    batch["action_target"] = torch.zeros(2, 64, 2)
    terms = loss_terms(pred, batch, cfg, stats, weights)
    assert all(torch.isfinite(v) for v in terms.values())
    assert (terms["mode"] > 0) == (loss_name == "wta")
    terms["loss"].backward()
    assert model.mode_embed.grad.abs().sum() > 0 and model.mode_head.weight.grad.abs().sum() > 0
    metrics = sample_metrics(pred, batch, 0.1)
    assert {"minADE_1", "minFDE_1", "MR_1", "minADE_6", "minFDE_6", "MR_6",
            "brier_minFDE_6"} <= set(metrics)
    assert (metrics["minADE_6"] <= metrics["minADE_1"] + 1e-6).all()


def test_input_type_is_validated_and_the_camera_student_keeps_its_parameters():
    with pytest.raises(ValueError, match="input_type 'lidar' is not one of"):
        get_model_config("tiny", input_type="lidar")
    camera = build_student("baseline", get_model_config("tiny"))
    assert {"trunk", "camera_proj", "camera_embed"} <= {n.split(".")[0] for n, _ in
                                                        camera.named_parameters()}
    assert camera.image_trunk is camera.trunk and not hasattr(camera, "scale_head")
    raster = build_student("baseline", get_model_config("tiny", input_type="raster"))
    assert raster.image_trunk.conv1.in_channels == 3 and not hasattr(raster, "trunk")
    vector = build_student("baseline", get_model_config("tiny", input_type="vector"))
    assert vector.image_trunk is None


def test_six_unicycle_modes_start_apart_one_mode_has_no_anchor():
    """The action head starts at zero; the mode anchors' curvatures set the modes apart, from
    right (mode 0) to left (mode 5)."""
    cfg = get_model_config("tiny", num_modes=6)
    stats = ActionNormalization(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.03]))
    with torch.no_grad():
        pred = student_plan(build_student("baseline", cfg), _batch("camera"), cfg, stats)
    assert (pred.modes_xy[0, :, -1, 1].diff() > 1.0).all()  # metres apart at 6.4 s
    assert not hasattr(build_student("baseline", get_model_config("tiny")), "mode_anchor")


def test_mode_anchors_learn_a_shape_per_step():
    """Each mode's anchor is one (acceleration, curvature) offset per step, so a mode can turn
    late (a junction) without turning early: one optimizer step moves the steps apart."""
    cfg = get_model_config("tiny", input_type="vector", polyline_features=10, num_modes=3)
    model = build_student("baseline", cfg)
    assert model.mode_anchor.shape == (3, cfg.horizon, 2)
    assert torch.equal(model.mode_anchor[:, :1].expand_as(model.mode_anchor),
                       model.mode_anchor.detach())  # the same offset at every step at first
    late = torch.zeros(cfg.horizon, 2)
    late[cfg.horizon // 2:, 1] = 1.0
    optimizer = torch.optim.SGD([model.mode_anchor], lr=0.1)
    out = model(*student_inputs(_batch("vector"), cfg))
    ((out["actions"] - late) ** 2).mean().backward()
    optimizer.step()
    anchor = model.mode_anchor.detach()
    assert (anchor[:, -1, 1] - anchor[:, 0, 1] > 0).all()


def _old_anchor_state(model) -> dict:
    """``model``'s state dict as code before per-step anchors wrote it: one (K, 2) anchor."""
    state = model.state_dict()
    state["mode_anchor"] = state["mode_anchor"][:, 0].clone()
    return state


def test_a_checkpoint_with_one_anchor_per_mode_loads_and_resumes():
    """Weights (and an optimizer's moments) saved with one (K, 2) anchor per mode load as that
    anchor at every step: the same plans, and a resumed optimizer steps."""
    cfg = get_model_config("tiny", input_type="vector", polyline_features=10, num_modes=2)
    torch.manual_seed(0)
    old = build_student("baseline", cfg)
    with torch.no_grad():
        old.mode_anchor.copy_(torch.tensor([[0.3, -0.7], [-0.2, 0.9]])[:, None])
    optimizer = torch.optim.AdamW(old.parameters())
    inputs = student_inputs(_batch("vector"), cfg)
    old(*inputs)["actions"].sum().backward()
    optimizer.step()
    optimizer_state = optimizer.state_dict()
    anchor_index = [n for n, _ in old.named_parameters()].index("mode_anchor")
    moments = optimizer_state["state"][anchor_index]
    moments["exp_avg"], moments["exp_avg_sq"] = moments["exp_avg"][:, 0], moments["exp_avg_sq"][:, 0]

    new = build_student("baseline", cfg)
    new.load_state_dict(_old_anchor_state(old))
    torch.testing.assert_close(new.mode_anchor, old.mode_anchor)
    old.eval()
    new.eval()
    with torch.no_grad():
        torch.testing.assert_close(new(*inputs)["actions"], old(*inputs)["actions"])
    resumed = torch.optim.AdamW(new.parameters())
    resumed.load_state_dict(optimizer_state)
    new.per_step_optimizer_state(resumed)
    assert resumed.state[new.mode_anchor]["exp_avg"].shape == new.mode_anchor.shape
    new.train()
    new(*inputs)["actions"].sum().backward()
    resumed.step()
    assert torch.isfinite(new.mode_anchor).all()


def test_padded_polylines_do_not_change_the_prediction():
    cfg = get_model_config("tiny", input_type="vector", polyline_features=10, num_modes=2)
    model = build_student("baseline", cfg).eval()
    batch = _batch("vector")
    scene, history, v0 = student_inputs(batch, cfg)
    garbage = batch["polylines"].clone()
    garbage[:, 15:] = 1e3  # rows whose points are all invalid
    with torch.no_grad():
        a = model(scene, history, v0)["actions"]
        b = model((garbage, batch["polyline_mask"]), history, v0)["actions"]
    torch.testing.assert_close(a, b)


def test_single_mode_wta_is_the_plain_position_loss():
    """K = 1 reproduces the single-trajectory losses: no mode term, pos on mode 0."""
    g = torch.Generator().manual_seed(2)
    modes_xy, modes_yaw = torch.randn(3, 1, 64, 2, generator=g), torch.randn(3, 1, 64, generator=g)
    heads = {"mode_logits": torch.zeros(3, 1), "direct": torch.zeros(3, 1, 64, 4)}
    batch = {"trajectory_xyz": torch.randn(3, 64, 3, generator=g),
             "trajectory_yaw": torch.randn(3, 64, generator=g),
             "action_target": torch.zeros(3, 64, 2)}
    cfg = get_model_config("tiny", output="direct")
    stats = ActionNormalization(torch.zeros(2), torch.ones(2))
    terms = loss_terms(Plan(modes_xy, modes_yaw, None, heads), batch, cfg, stats,
                       LossWeights(0.3, 0.0, 0.0, 0.07, 0.1))
    torch.testing.assert_close(terms["pos"], position_loss(modes_xy[:, 0],
                                                           batch["trajectory_xyz"][..., :2]))
    assert terms["mode"] == 0


@pytest.mark.parametrize("loss_name", ["wta", "nll"])
def test_num_modes_flag_reaches_the_model_on_the_world(world, tmp_path, loss_name):
    """--num-modes 6 (camera input, built-in world) trains, checkpoints 6 mode queries and
    logs the multimodal metrics; the same flags evaluate."""
    argv = ["--model", "baseline", "--model-size", "tiny", "--resolution", "32",
            "--batch-size", "8", "--num-workers", "0", "--max-epochs", "1",
            "--max-train-samples", "16", "--max-val-samples", "8",
            "--num-modes", "6", "--multimodal-loss", loss_name, "--output-dir", str(tmp_path)]
    with contextlib.chdir(world):  # the default data paths find the world's files
        assert train_main(argv) == 0
    state = torch.load(tmp_path / "baseline_seed42_best.pt", weights_only=True)
    assert state["model_config"]["num_modes"] == 6
    assert state["model"]["mode_embed"].shape[0] == 6
    assert ("scale_head.weight" in state["model"]) == (loss_name == "nll")
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["val_minADE_6"] <= record["val_minADE_1"] and record["val_MR_6"] <= 1
    assert math.isfinite(record["val_brier_minFDE_6"])
