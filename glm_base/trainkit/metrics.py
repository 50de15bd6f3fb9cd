"""Metric logging: a JSONL file and TensorBoard in the run directory, and PNG curves at the end."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Iterable

from common.jsonl import append_jsonl, load_jsonl, write_jsonl

logger = logging.getLogger(__name__)


class MetricLogger:
    """Append ``{"step": n, **metrics}`` lines to ``run_dir/metrics.jsonl`` and TensorBoard scalars.

    Only the main process should log (pass ``enabled=False`` elsewhere). On resume, lines from steps
    after the resumed step are dropped first, so the file tells one consistent history.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None,
                 tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            # a crash in the middle of an append leaves a torn last line: drop it (and only it)
            kept = [row for row in read_metrics(self.path) if row.get("step", 0) <= resume_step]
            write_jsonl(self.path, kept)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError as err:  # tensorboard is a dependency, but keep training if it breaks
                logger.warning("TensorBoard logging disabled: %s", err)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()}
        append_jsonl(self.path, {"step": step, **clean})
        if self.writer is not None:
            for key, value in clean.items():
                if isinstance(value, float) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class StepWindow:
    """Train metrics averaged over the steps since the last log line: loss, gradient norm, the loss
    function's own metrics (``train/<name>``) and tokens per second."""

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.tokens = 0
        self.start = time.perf_counter()

    def add(self, result, tokens: int = 0) -> None:
        values = {"train/loss": result.loss, **{f"train/{k}": v for k, v in result.metrics.items()}}
        if result.grad_norm is not None:
            values["train/grad_norm"] = result.grad_norm
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
            self.counts[key] = self.counts.get(key, 0) + 1
        self.tokens += tokens

    def flush(self) -> dict[str, float]:
        out = {key: self.sums[key] / self.counts[key] for key in self.sums}
        if self.tokens:
            out["train/tokens_per_s"] = self.tokens / max(time.perf_counter() - self.start, 1e-9)
        self._reset()
        return out


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a ``metrics.jsonl``; a torn last line (a crash mid-append) is dropped, a bad line
    anywhere else is an error naming the file and line."""
    return load_jsonl(path, tolerate_torn_tail=True)


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start); ``window <= 1`` returns
    the values unchanged."""
    if window <= 1:
        return list(values)
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_curves(metrics_path: str | Path, out_png: str | Path, keys: Iterable[str], title: str = "",
                panels: list[tuple[str, list[str]]] | None = None, smooth: int = 0,
                reference_lines: dict[str, tuple[float, str]] | None = None, raw: Iterable[str] = ()) -> Path | None:
    """Curves over optimizer steps from a ``metrics.jsonl``: every key that appears becomes a line.

    ``keys`` go in one panel; ``panels`` (``[(panel title, keys), ...]``) instead stacks one panel
    per group on a shared step axis (keys absent from the file are left out, empty panels too).
    ``smooth > 1`` draws each series as a trailing moving average of that many steps over its raw
    values (faint), for noisy per-step figures such as RL rewards, except the ``raw`` keys (figures
that are not noisy, such as a controller's coefficient). ``reference_lines`` maps a panel
    title to ``(value, label)``: a dashed horizontal line (a target). Returns the PNG's path, or None
    when no key has a value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    groups = panels if panels is not None else [("", list(keys))]
    drawn = []
    for panel_title, panel_keys in groups:
        series = {}
        for key in panel_keys:
            points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if points:
                series[key] = points
        if series:
            drawn.append((panel_title, series))
    if not drawn:
        return None
    fig, axes = plt.subplots(len(drawn), 1, figsize=(7, 2.2 + 1.8 * len(drawn)) if len(drawn) > 1 else (7, 4),
                             sharex=True, squeeze=False)
    for ax, (panel_title, series) in zip(axes[:, 0], drawn):
        for i, (key, points) in enumerate(series.items()):
            steps, values = zip(*points)
            color = f"C{i}"
            if smooth > 1 and len(values) > smooth and key not in raw:
                ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
                ax.plot(steps, moving_average(list(values), smooth), color=color, label=f"{key} ({smooth}-step mean)")
            else:
                ax.plot(steps, values, color=color, label=key, marker="o" if len(points) < 30 else None, markersize=3)
        if reference_lines and panel_title in reference_lines:
            value, label = reference_lines[panel_title]
            ax.axhline(value, color="black", linestyle="--", linewidth=1, label=label)
        if panel_title:
            ax.set_title(panel_title, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("optimizer step")
    if len(drawn) == 1:
        axes[0, 0].set_ylabel("value")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png


def plot_bars(values_by_name: dict[str, float], out_png: str | Path, title: str = "", ylabel: str = "eval accuracy",
              ylim: float | None = 1.08) -> Path:
    """A bar chart of named values (accuracy of a model and its baselines), each bar labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, values = list(values_by_name), list(values_by_name.values())
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar(names, values, color=["#3b7dd8", "#7a9a01", "#c08a2b", "#999999"][: len(names)])
    for bar, value in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, value + 0.01, f"{value:.2f}", ha="center", va="bottom")
    if ylim is not None:
        ax.set_ylim(0, ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return Path(out_png)
