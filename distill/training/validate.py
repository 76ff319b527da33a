"""Validation: the loss terms and per-sample metrics of a model over a whole loader, reduced on
the device and read back once."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..constants import CAMERAS, IMAGENET_MEAN, IMAGENET_STD
from ..kinematics import speed_at_t0
from ..metrics import constant_velocity, displacement_errors, min_ade_fde_mr, trajectory_metrics
from ..models.plan import Plan, student_plan
from .distributed import Dist, all_reduce_sum, gather_cpu
from .objective import SUM_KEYS, loss_terms

FRONT_WIDE = "camera_front_wide_120fov"
MODE_KS = (1, 6)  # minADE_k, minFDE_k, MR_k reported for these k (the benchmarks' k)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


@torch.no_grad()
def run_validation(model, loader, cfg, stats, weights, device,
                   keep_predictions: bool = False, action_stats: bool = False,
                   miss: str = "final", d: Dist = Dist(), scenarios: int = 0,
                   preview: int = 0) -> dict:
    """Mean loss terms (batch-weighted) and mean per-sample metrics over ``loader`` (``miss``:
    the miss rule of MR_k, see ``distill.metrics.min_ade_fde_mr``). Under DDP each rank passes
    its shard of the split and every rank gets the means over all of them. With
    ``keep_predictions`` (one process),
    also the per-sample metrics, predicted (most probable mode) and teacher xy and the keys;
    with ``action_stats`` (unicycle modes), predicted vs teacher action statistics; with
    ``scenarios`` (the batches' ``scenario_id`` runs below it), ``scenario_ade``: the mean ADE
    of each scenario (None: none in the split); with ``preview``, ``preview``: that many
    samples of this rank's first batch (``preview_samples``)."""
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    per_sample: dict[str, list] = {}
    kept = {"pred_xy": [], "gt_xy": [], "clip_id": [], "t0_us": [], "actions": [],
            "target_actions": []}
    embeddings = []  # (student, teacher, coc_id) per batch, reasoning students only
    count = 0
    by_scenario = torch.zeros(2 * scenarios, device=device, dtype=torch.float64)
    shown = None
    for batch in loader:
        batch = to_device(batch, device)
        plan = student_plan(model, batch, cfg, stats)
        terms = loss_terms(plan, batch, cfg, stats, weights)
        metrics = sample_metrics(plan, batch, cfg.dt, miss)
        n = len(batch["clip_id"])
        for k in SUM_KEYS:
            sums[k] = sums.get(k, 0.0) + terms[k].detach() * n
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + v.sum()
            per_sample.setdefault(k, []).append(v)
        if scenarios:  # ADE sums, then counts, per scenario
            ids = batch["scenario_id"].long()
            by_scenario.index_add_(0, ids, metrics["ade"].double())
            by_scenario.index_add_(0, ids + scenarios, torch.ones_like(metrics["ade"]).double())
        if preview and shown is None:
            shown = preview_samples(plan, batch, preview)
        if "embedding" in plan.heads:
            embeddings.append((plan.heads["embedding"], batch["coc_embedding"], batch["coc_id"]))
        if keep_predictions:
            kept["pred_xy"].append(plan.xy)
            kept["gt_xy"].append(batch["trajectory_xyz"][..., :2])
            kept["clip_id"] += batch["clip_id"]
            kept["t0_us"].append(batch["t0_us"])
        if action_stats and plan.actions is not None:
            kept["actions"].append(plan.actions)
            kept["target_actions"].append(batch["action_target"])
        count += n
    keys = sorted(sums)
    totals = torch.cat([torch.stack([torch.as_tensor(sums[k], device=device, dtype=torch.float64)
                                     for k in keys]
                                    + [torch.tensor(float(count), device=device).double()]),
                        by_scenario])
    totals = all_reduce_sum(totals, d)  # (keys + 1 + 2 S,): sums, the sample count, scenarios
    values = totals.tolist()  # one read-back
    result = {k: v / values[len(keys)] for k, v in zip(keys, values)}
    if scenarios:
        ade, n = values[len(keys) + 1:len(keys) + 1 + scenarios], values[-scenarios:]
        result["scenario_ade"] = [a / c if c else None for a, c in zip(ade, n)]
    if shown is not None:
        result["preview"] = {k: v.cpu() if v is not None else None for k, v in shown.items()}
    result["coc_top1"] = result["coc_top5"] = None  # no embedding (baseline): null in the log
    if embeddings:
        student, teacher, ids = (gather_cpu(torch.cat(parts), d) for parts in zip(*embeddings))
        result["coc_top1"], result["coc_top5"] = coc_retrieval(student, teacher, ids).tolist()
    if kept["actions"]:
        result["action_stats"] = action_summary(gather_cpu(torch.cat(kept["actions"]), d),
                                                gather_cpu(torch.cat(kept["target_actions"]), d))
    if keep_predictions:
        result["per_sample"] = {k: torch.cat(v).cpu() for k, v in per_sample.items()}
        result["pred_xy"] = torch.cat(kept["pred_xy"]).cpu()
        result["gt_xy"] = torch.cat(kept["gt_xy"]).cpu()
        result["keys"] = list(zip(kept["clip_id"], torch.cat(kept["t0_us"]).tolist()))
    return result


def preview_samples(plan: Plan, batch: dict, n: int) -> dict:
    """The first ``n`` samples' predicted and teacher xy (n, T, 2) and front-wide frame at t0
    (n, H, W, 3, in [0, 1] before clipping; None without camera frames), on the device."""
    front = None
    if "frames" in batch:
        rgb = batch["frames"][:n, CAMERAS.index(FRONT_WIDE), -3:].float()  # (n, 3, H, W)
        mean = rgb.new_tensor(IMAGENET_MEAN)[:, None, None]
        std = rgb.new_tensor(IMAGENET_STD)[:, None, None]
        front = (rgb * std + mean).permute(0, 2, 3, 1)
    return {"pred_xy": plan.xy[:n].float(), "gt_xy": batch["trajectory_xyz"][:n, :, :2].float(),
            "front": front}


def coc_retrieval(student: Tensor, teacher: Tensor, ids: Tensor, ks=(1, 5)) -> Tensor:
    """For each k, the fraction of samples whose own sentence is among the k distinct sentences
    whose teacher embeddings are nearest (cosine) to the sample's student embedding.

    student, teacher (V, D), ids (V,) sentence ids -> (len(ks),) on the device. The candidates
    are one teacher row per distinct id; k is capped at their number."""
    distinct, own = torch.unique(ids, return_inverse=True)  # own: (V,) candidate of each sample
    rows = torch.arange(len(ids), device=ids.device)
    first = torch.full_like(distinct, len(ids)).scatter_reduce(0, own, rows, "amin")  # (C,)
    cosine = F.normalize(student, dim=-1) @ F.normalize(teacher[first], dim=-1).T  # (V, C)
    nearest = cosine.topk(min(max(ks), len(distinct)), dim=1).indices  # (V, k_max)
    hit = nearest == own[:, None]
    return torch.stack([hit[:, :k].any(1).float().mean() for k in ks])


def action_summary(pred, target) -> dict:
    """Mean and std of predicted and teacher acceleration (m/s^2) and curvature (1/m)."""
    out = {}
    for i, name in enumerate(("accel", "curvature")):
        out[name] = {"pred_mean": float(pred[..., i].mean()), "pred_std": float(pred[..., i].std()),
                     "teacher_mean": float(target[..., i].mean()),
                     "teacher_std": float(target[..., i].std())}
    return out


def constant_velocity_errors(data, dt: float, kinematics: str = "distill") -> torch.Tensor:
    """(N, T) float64 displacement errors of driving straight on at the speed estimated (by
    ``kinematics``' estimator) from each history of a split (``data``: its ``SplitData``);
    their mean is ``cv_ade``. dt is the time between poses (the benchmarks' differs from the
    guide's 0.1 s)."""
    xyz, rot = (torch.from_numpy(data.history[k]).double()
                for k in ("ego_history_xyz", "ego_history_rot"))
    gt = torch.from_numpy(data.labels["trajectory_xyz"][..., :2]).double()
    v0 = speed_at_t0(kinematics, xyz, rot, dt)
    return displacement_errors(constant_velocity(v0, gt.shape[1], dt), gt)


def selection_metric(val: dict, num_modes: int) -> float:
    """What model selection and early stopping minimize: val ADE, or with several modes
    minADE_6: over all of them when K <= 6, over the 6 most probable when K > 6 (the most
    probable mode's ADE would judge a multimodal model by one guess at a fork, which is not
    what it is trained or compared for; MODE_KS holds k = 6, not every K up to 25)."""
    return val["ade"] if num_modes == 1 else val[f"minADE_{MODE_KS[-1]}"]


def sample_metrics(plan: Plan, batch: dict, dt: float, miss: str = "final") -> dict[str, Tensor]:
    """Per-sample (B,) ade, fde, ade_1s/2s/3s, yaw_err_deg of the most probable mode, then
    minADE_k, minFDE_k, MR_k for k in MODE_KS over the top-k modes by probability (``miss``:
    the miss rule of ``distill.metrics.min_ade_fde_mr``) and brier_minFDE_6."""
    gt_xy = batch["trajectory_xyz"][..., :2]
    out = trajectory_metrics(plan.xy, gt_xy, plan.yaw, batch["trajectory_yaw"], dt)
    probs = plan.probs.detach()
    for k in MODE_KS:
        multi = min_ade_fde_mr(plan.modes_xy.detach(), gt_xy, probs, k=k, miss=miss,
                               reduce=False)
        out.update({f"{name}_{k}": multi[name] for name in ("minADE", "minFDE", "MR")})
    out[f"brier_minFDE_{MODE_KS[-1]}"] = multi["brier_minFDE"]
    return out
