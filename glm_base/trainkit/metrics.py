"""Metric logging: a JSONL file and TensorBoard in the run directory, and PNG curves at the end."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Iterable

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
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
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
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **clean}) + "\n")
        if self.writer is not None:
            for key, value in clean.items():
                if isinstance(value, float) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(metrics_path: str | Path, out_png: str | Path, keys: Iterable[str], title: str = "") -> Path | None:
    """One panel per key prefix group; each key that appears in the JSONL becomes a line over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    series = {}
    for key in keys:
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if points:
            series[key] = points
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, points in series.items():
        steps, values = zip(*points)
        ax.plot(steps, values, label=key, marker="o" if len(points) < 30 else None, markersize=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("value")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
