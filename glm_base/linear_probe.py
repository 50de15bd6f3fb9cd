"""The linear-probe baseline of cloze fine-tuning: L2-regularised logistic regression on frozen
features of the pretrained model, the L2 strength chosen by k-fold cross-validation."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .cloze_task import MODEL_KEYS, ClozeExample, collate


@torch.no_grad()
def probe_features(model, examples: Sequence[ClozeExample], pad_id: int, kind: str = "sop",
                   batch_size: int = 32) -> torch.Tensor:
    """Frozen features of each example's first row: the final hidden state at ``<sop>`` (``kind="sop"``)
    or the mean over Part A (``kind="mean"``)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    feats = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        rows = [ex.rows[0] for ex in chunk]
        batch = collate([ClozeExample([r], True, ex.label_tokens, ex.label, ex.lang) for r, ex in zip(rows, chunk)], pad_id)
        out = model(**{k: batch[k].to(device) for k in MODEL_KEYS}, output_hidden_states=True, use_cache=False)
        hidden = out.hidden_states[-1].float()
        part_a = batch["part_a_length"].to(device)
        if kind == "sop":
            feats.append(hidden[torch.arange(len(chunk), device=device), part_a].cpu())
        else:
            keep = (torch.arange(hidden.shape[1], device=device)[None] < part_a[:, None]).float()
            feats.append(((hidden * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)).cpu())
    model.train(was_training)
    return torch.cat(feats)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, iters: int = 100):
    """Multinomial logistic regression (L-BFGS, float64): minimises mean cross-entropy +
    ``l2 * ||W||^2``; returns ``(W, b)``."""
    x = x.double()
    w = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


PROBE_L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, num_classes: int,
                 folds: int = 4, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Predictions on ``test_x`` of a logistic regression fitted on standardised ``train_x``, with the
    L2 strength from :data:`PROBE_L2_GRID` chosen by ``folds``-fold cross-validation (ties: stronger
    L2). Returns ``(predictions, chosen l2)``."""
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    xs, xt = (train_x - mean) / std, (test_x - mean) / std
    n = len(xs)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    folds = min(folds, n)
    best, best_l2 = -1.0, PROBE_L2_GRID[-1]
    for l2 in reversed(PROBE_L2_GRID):
        hits = 0
        for f in range(folds):
            held = order[f::folds]
            keep = torch.ones(n, dtype=torch.bool)
            keep[held] = False
            w, b = fit_logistic(xs[keep], train_y[keep], num_classes, l2)
            hits += int(((xs[held].double() @ w + b).argmax(-1) == train_y[held]).sum())
        if hits / n > best:
            best, best_l2 = hits / n, l2
    w, b = fit_logistic(xs, train_y, num_classes, best_l2)
    return (xt.double() @ w + b).argmax(-1), best_l2
