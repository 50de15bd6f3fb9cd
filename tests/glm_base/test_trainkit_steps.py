"""trainkit.steps: what one optimizer step guarantees (normalisation, metrics, guards, autocast)."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from glm_base.trainkit.steps import NonFiniteLoss, global_count, train_step


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.proj(x)


def classify_loss(model, batch, num_items):
    """Summed cross-entropy / num_items, and accuracy normalised the same way."""
    logits = model(batch["x"])
    loss = torch.nn.functional.cross_entropy(logits, batch["y"], reduction="sum") / num_items
    correct = (logits.argmax(-1) == batch["y"]).sum().float()
    return loss, {"accuracy": correct / num_items}


def setup(accumulation=1, lr=0.1):
    model = Linear()
    accelerator = Accelerator(gradient_accumulation_steps=accumulation, cpu=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model, optimizer = accelerator.prepare(model, optimizer)
    return accelerator, model, optimizer


def data(n=6):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, generator=g), torch.tensor([0, 1, 1, 0, 1, 0][:n])


def test_metrics_are_the_global_mean_of_the_step_under_accumulation():
    x, y = data()
    results = []
    for cut in ([6], [1, 5], [2, 2, 2]):  # uneven micro-batches: a per-micro-batch mean would differ
        accelerator, model, optimizer = setup(len(cut))
        with torch.no_grad():
            expected_accuracy = (model(x).argmax(-1) == y).float().mean().item()
            expected_loss = torch.nn.functional.cross_entropy(model(x), y).item()
        starts = [sum(cut[:i]) for i in range(len(cut))]
        batches = [{"x": x[s:s + c], "y": y[s:s + c]} for s, c in zip(starts, cut)]
        result = train_step(accelerator, model, optimizer, batches, normaliser=6, loss_fn=classify_loss)
        assert result.loss == pytest.approx(expected_loss, rel=1e-6)
        assert result.metrics["accuracy"] == pytest.approx(expected_accuracy, rel=1e-6)
        results.append([p.detach().clone() for p in model.parameters()])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


class InfiniteGradient(torch.autograd.Function):
    """Identity forward; an infinite gradient backward: a finite loss with non-finite gradients."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def test_finite_loss_with_non_finite_gradients_never_reaches_the_optimizer():
    accelerator, model, optimizer = setup()
    before = [p.detach().clone() for p in model.parameters()]
    x, y = data()

    def loss_fn(model, batch, num_items):
        logits = InfiniteGradient.apply(model(batch["x"]))
        return torch.nn.functional.cross_entropy(logits, batch["y"], reduction="sum") / num_items, {}

    with pytest.raises(NonFiniteLoss) as info:
        train_step(accelerator, model, optimizer, [{"x": x, "y": y}], normaliser=6, loss_fn=loss_fn, grad_clip=1.0)
    assert info.value.what == "gradient norm"
    for a, b in zip(before, model.parameters()):
        assert torch.equal(a, b.detach())
    assert all(p.grad is None for p in model.parameters())


def test_nan_loss_never_reaches_the_optimizer():
    accelerator, model, optimizer = setup()
    before = [p.detach().clone() for p in model.parameters()]
    x, y = data()

    def loss_fn(model, batch, num_items):
        return model(batch["x"]).sum() * float("nan"), {}

    with pytest.raises(NonFiniteLoss, match="loss"):
        train_step(accelerator, model, optimizer, [{"x": x, "y": y}], normaliser=6, loss_fn=loss_fn)
    for a, b in zip(before, model.parameters()):
        assert torch.equal(a, b.detach())


def test_only_the_forward_runs_under_autocast(monkeypatch):
    accelerator, model, optimizer = setup()
    state = {"inside": False, "forward_inside": None}

    @contextlib.contextmanager
    def autocast():
        state["inside"] = True
        try:
            yield
        finally:
            state["inside"] = False

    real_backward, real_clip, real_step = accelerator.backward, accelerator.clip_grad_norm_, optimizer.step

    def backward(loss, **kwargs):
        assert not state["inside"], "backward ran inside autocast"
        return real_backward(loss, **kwargs)

    def clip(*args, **kwargs):
        assert not state["inside"], "clipping ran inside autocast"
        return real_clip(*args, **kwargs)

    def step(*args, **kwargs):
        assert not state["inside"], "the optimizer step ran inside autocast"
        return real_step(*args, **kwargs)

    def loss_fn(model, batch, num_items):
        state["forward_inside"] = state["inside"]
        return classify_loss(model, batch, num_items)

    monkeypatch.setattr(accelerator, "autocast", autocast)
    monkeypatch.setattr(accelerator, "backward", backward)
    monkeypatch.setattr(accelerator, "clip_grad_norm_", clip)
    monkeypatch.setattr(optimizer, "step", step)
    x, y = data()
    train_step(accelerator, model, optimizer, [{"x": x, "y": y}], normaliser=6, loss_fn=loss_fn, grad_clip=1.0)
    assert state["forward_inside"] is True


def test_deepspeed_reports_the_norm_only_after_its_step(monkeypatch):
    """DeepSpeed's clip_grad_norm_ returns None until the engine has stepped (it clips inside its
    step); the step then reads the engine's norm instead of calling float(None)."""
    accelerator, model, optimizer = setup()
    monkeypatch.setattr(accelerator, "clip_grad_norm_", lambda *args, **kwargs: None)
    engine = SimpleNamespace(get_global_grad_norm=lambda: 2.5)
    monkeypatch.setattr(accelerator, "deepspeed_engine_wrapped", engine, raising=False)
    x, y = data()
    result = train_step(accelerator, model, optimizer, [{"x": x, "y": y}], normaliser=6, loss_fn=classify_loss,
                        grad_clip=1.0)
    assert result.grad_norm == 2.5
    engine.get_global_grad_norm = lambda: float("inf")
    with pytest.raises(NonFiniteLoss, match="gradient norm"):
        train_step(accelerator, model, optimizer, [{"x": x, "y": y}], normaliser=6, loss_fn=classify_loss,
                   grad_clip=1.0)


def test_global_count_on_one_process_is_the_local_count():
    accelerator = Accelerator(cpu=True)
    assert global_count(accelerator, 17) == 17.0
