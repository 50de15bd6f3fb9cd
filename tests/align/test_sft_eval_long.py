"""align.eval_long: needle accuracy by length and depth, JSON + heatmap, skipped rows, scoring."""

from __future__ import annotations

import json

import pytest
from sft_helpers import model_dir

from align import eval_long
from common.jsonl import write_jsonl

FILLER = "The keeper lights the lamp at dusk. "


def needle_file(path, lengths=(20, 40, 400), depths=(0.0, 0.5, 1.0)):
    rows = []
    for length in lengths:
        for k, depth in enumerate(depths):
            code = str(100000 + 10 * length + k)
            sentences = [FILLER] * (length // 8)
            at = round(depth * len(sentences))
            text = "".join(sentences[:at]) + f"The code of Mira's locker is {code}. " + "".join(sentences[at:])
            rows.append({"id": f"n-{length}-{k}", "lang": "en", "task": "needle",
                         "messages": [{"role": "user", "content": text + "Question: What is the code of Mira's locker?"},
                                      {"role": "assistant", "content": f"The code of Mira's locker is {code}."}],
                         "meta": {"answers": [code], "target_tokens": length, "depth": depth + 0.01 * k}})
    rows.reverse()  # the depth cells come from the depths, not the file order
    write_jsonl(path, rows)
    return rows


@pytest.mark.parametrize("arch", ["glm4", "glm1"])
def test_eval_long_writes_json_and_heatmap_of_the_grid(tmp_path, arch, capsys):
    model = model_dir(tmp_path / "run" / "model", arch)
    needle_file(tmp_path / "needles.jsonl")
    eval_long.main(["--model", str(model), "--data", str(tmp_path / "needles.jsonl"), "--max-tokens", "200",
                    "--max-new-tokens", "4"])
    out = tmp_path / "run"
    result = json.loads((out / "eval_long.json").read_text())
    assert (out / "eval_long.png").stat().st_size > 1000
    assert result["lengths"] == [20, 40, 400] and result["depth_cells"] == [0, 1, 2]
    assert len(result["cells"]) == 9
    assert result["n"] == 6 and result["skipped"] == 3  # the 400-length rows are beyond --max-tokens
    assert sorted(result["skipped_ids"]) == ["n-400-0", "n-400-1", "n-400-2"]
    assert result["by_length"]["400"] == {"n": 0, "accuracy": None}
    assert [c["depth"] for c in result["cells"] if c["length"] == 20] == [0.0, 0.51, 1.02]
    assert 0.0 <= result["accuracy"] <= 1.0  # a random model: whatever it answers, it is scored
    assert "needle accuracy" in capsys.readouterr().out


def test_eval_long_scores_answers_by_cell(tmp_path, monkeypatch):
    import align.sft

    model = model_dir(tmp_path / "model", "glm4")
    needle_file(tmp_path / "needles.jsonl", lengths=(20, 40))

    def fake_reply(model, tokenizer, messages, architecture, max_new_tokens):
        code = messages[-1]["content"].rsplit(" ", 1)[-1].rstrip(".")
        length, cell = divmod(int(code) - 100000, 10)  # needle_file's codes say where they are
        right = cell == 0 or length == 40  # right at depth 0, and at every depth of length 40
        return f"It is {code}." if right else "It is 999999."

    monkeypatch.setattr(align.sft, "generate_reply", fake_reply)
    result = eval_long.evaluate_needles(*_load(model), eval_long.needle_rows(tmp_path / "needles.jsonl"),
                                        progress=False)
    by_cell = {(c["length"], c["depth_cell"]): c["accuracy"] for c in result["cells"]}
    assert by_cell == {(20, 0): 1.0, (20, 1): 0.0, (20, 2): 0.0, (40, 0): 1.0, (40, 1): 1.0, (40, 2): 1.0}
    assert result["by_length"] == {"20": {"n": 3, "accuracy": pytest.approx(1 / 3)}, "40": {"n": 3, "accuracy": 1.0}}
    assert result["accuracy"] == pytest.approx(4 / 6)


def _load(path):
    from glm_base.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(path, eval_mode=True)


def test_eval_long_refuses_rows_without_needle_fields(tmp_path, capsys):
    model = model_dir(tmp_path / "model", "glm4")
    write_jsonl(tmp_path / "bad.jsonl", [{"task": "needle", "messages": [], "meta": {"answers": ["1"]}}])
    with pytest.raises(SystemExit) as exit_info:
        eval_long.main(["--model", str(model), "--data", str(tmp_path / "bad.jsonl")])
    assert exit_info.value.code == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
