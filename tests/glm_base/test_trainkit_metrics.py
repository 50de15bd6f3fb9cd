"""Metric curves: the moving average by hand, and stacked panels drawn from a metrics.jsonl."""

import json

import pytest

from glm_base.trainkit.metrics import moving_average, plot_curves


def test_moving_average_is_a_trailing_mean():
    assert moving_average([1.0, 2.0, 3.0, 4.0, 5.0], 2) == [1.0, 1.5, 2.5, 3.5, 4.5]
    assert moving_average([3.0, 6.0, 9.0], 5) == [3.0, 4.5, 6.0]  # fewer values at the start
    assert moving_average([1.0, 4.0], 1) == [1.0, 4.0]


def write_metrics(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_panels_stack_present_keys_and_skip_empty_groups(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    rows = [{"step": s, "reward": (-1) ** s * 0.5 + s / 40, "kl": s / 20, "kl_coef": 0.1 + s / 100} for s in range(1, 41)]
    metrics = write_metrics(tmp_path / "metrics.jsonl", rows)
    one = plot_curves(metrics, tmp_path / "one.png", [], panels=[("rewards", ["reward", "rm"])], smooth=8)
    three = plot_curves(metrics, tmp_path / "three.png", [], smooth=8, raw=["kl_coef"],
                        panels=[("rewards", ["reward", "absent"]), ("KL", ["kl"]), ("coef", ["kl_coef"]),
                                ("nothing here", ["missing"])], reference_lines={"KL": (1.0, "target")})
    # the stacked figure grows with its panels (three drawn, the empty fourth left out)
    assert Image.open(three).size[1] > Image.open(one).size[1] * 1.5
    assert plot_curves(metrics, tmp_path / "none.png", ["missing"]) is None
    assert not (tmp_path / "none.png").exists()
