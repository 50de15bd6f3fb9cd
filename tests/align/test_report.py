"""align.report: report.md and a self-contained report.html say the same thing, escape text, and
render in a real browser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from align.report import build_report
from common.errors import UserError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def fake_run(tmp_path: Path) -> Path:
    """A run directory as the pipeline leaves it, with hand-written figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = tmp_path / "run"
    (run / "pretrain").mkdir(parents=True)
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3.0, 2.0, 1.5])
    fig.savefig(run / "pretrain" / "loss_curve.png")
    plt.close(fig)
    (run / "sft").mkdir()
    (run / "sft" / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "train/loss": 3 - s / 10}) + "\n"
                                                       for s in range(1, 6)))
    stages = {
        "world": {"seconds": 1.2},
        "pretrain": {"seconds": 170.0, "steps": 400, "tokens_seen": 2_000_000, "eval/blank/loss": 2.98,
                     "eval/blank/accuracy": 0.255, "eval/blank/unigram_accuracy": 0.043},
        "fact_probe": {"seconds": 30.0, "probes": 300, "accuracy": 0.0, "choice_accuracy": 0.063, "chance": 0.059,
                       "majority": 0.073},
        "sft": {"seconds": 60.0, "eval/loss": 1.23},
        "rm": {"seconds": 300.0, "steps": 700, "eval": {"accuracy": 0.944, "pairs": 933,
                                                         "by_category": {"factuality": 0.951, "mixing": 0.917}}},
    }
    (run / "summary.json").write_text(json.dumps({"stages": stages}))
    (run / "metrics.json").write_text(json.dumps({
        "sft": {"mixing_rate": 0.2, "mixing_rate_ci": [0.15, 0.26], "needless_refusal_rate": 0.1,
                "harmful_refusal_rate": 0.8, "heldout_loss": 2.0},
        "ppo": {"mixing_rate": 0.05, "mixing_rate_ci": [0.03, 0.09], "needless_refusal_rate": 0.06,
                "harmful_refusal_rate": 0.95, "heldout_loss": 2.2}}))
    (run / "ppo").mkdir()
    (run / "ppo" / "config.yaml").write_text("ppo:\n  kl_target: 4.0\n")
    (run / "ppo" / "metrics.jsonl").write_text('{"step": 1, "kl": 1.0}\n{"step": 2, "kl": 5.0}\n')
    (run / "samples.jsonl").write_text(json.dumps({"lang": "zh", "prompt": "灯塔在哪里？<script>x</script>",
                                                   "sft": "在北边。", "ppo": "灯塔在北边的悬崖上。"}, ensure_ascii=False) + "\n")
    return run


def test_report_sections_tables_and_escaping(tmp_path):
    run = fake_run(tmp_path)
    md, page = build_report(run)
    text, markup = md.read_text(encoding="utf-8"), page.read_text(encoding="utf-8")
    for title in ("Stages", "Pretraining (blank infilling)", "Fact probe", "Supervised fine-tuning",
                  "Alignment metrics by stage (95% intervals)", "RLHF targets: PPO against the SFT model",
                  "Sample responses"):
        assert f"## {title}" in text and f"<h2>{title.replace('(', '(')}</h2>" in markup
    assert "| blank | 2.980 | 0.255 | 0.043 |" in text
    assert "| ppo | 0.050 [0.030, 0.090] | – | 0.060 | 0.950 | – | 2.200 |" in text
    assert "| language-mixing rate down >= 50% | 0.200 | 0.050 | yes |" in text
    assert "| needless-refusal rate down >= 50% | 0.100 | 0.060 | no |" in text
    assert "| harmful prompts refused >= 90% | 0.800 | 0.950 | yes |" in text
    assert "| held-out SFT loss within +5% | 2.000 | 2.200 | no |" in text
    assert "| KL to SFT below 2x its target (4.0; mean of the last 2 steps) | – | 3.000 | yes |" in text
    # the reward model's held-out accuracy, overall and by category (it sits under "eval" in its summary)
    assert "| held-out pairwise accuracy (933 pairs) | 0.944 |" in text and "| factuality | 0.951 |" in text
    assert "generated exactly 0.0%," in text and "tiny_facts" in text  # the fact probe says why facts are absent
    assert "<script>x</script>" not in markup and "&lt;script&gt;x&lt;/script&gt;" in markup
    assert markup.count("data:image/png;base64,") == 2  # pretraining loss, SFT curves: self-contained
    assert "src=\"report_figures" not in markup and "![pretraining loss](pretrain/loss_curve.png)" in text


def test_report_says_what_an_unhalved_mixing_rate_is_made_of(tmp_path):
    from align.report import mixing_note

    sft = {"mixing_rate": 0.031, "mixed_reply_rate": 0.095, "mostly_wrong_language_rate": 0.021,
           "mixing_from_mostly_wrong": 0.7}
    ppo = {"mixing_rate": 0.024, "mixed_reply_rate": 0.046, "mostly_wrong_language_rate": 0.018,
           "mixing_from_mostly_wrong": 0.83}
    (note,) = mixing_note({"sft": sft, "ppo": ppo})
    assert "from 9.5% to 4.6%" in note and "from 0.031 to 0.024" in note
    assert "1.8% of the PPO policy's replies" in note and "(SFT: 2.1%)" in note and "carry 83%" in note
    assert mixing_note({"sft": sft, "ppo": {**ppo, "mixing_rate": 0.015}}) == []  # halved: nothing to explain
    assert mixing_note({"sft": {"mixing_rate": 0.1}, "ppo": {"mixing_rate": 0.2}}) == []  # figures missing


def test_report_needs_a_pipeline_run(tmp_path):
    with pytest.raises(UserError, match="no summary.json"):
        build_report(tmp_path)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/services.sh installs it)")
def test_report_renders_in_chromium(tmp_path):
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    from playwright.sync_api import sync_playwright

    _, page_path = build_report(fake_run(tmp_path))
    shot = Path(__file__).resolve().parents[1] / "artifacts" / "report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(page_path.as_uri())
            assert page.locator("h2").count() == 8  # with the reward model's section
            sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
            assert sizes and all(done and width > 100 for done, width in sizes)
            assert "灯塔在北边的悬崖上。" in page.locator("section").last.inner_text()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000


def test_fact_probe_note_follows_what_the_pretraining_holds():
    from align.report import fact_probe_note

    assert "few-minute pretraining" in fact_probe_note({"accuracy": 0.0})
    note = fact_probe_note({"accuracy": 0.35})
    assert "holds 35% of the held-out facts" in note and "few-minute" not in note
