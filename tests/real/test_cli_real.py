"""``mmicl heads`` / ``mmicl knockout`` on a tiny model saved to a folder; one-line bad-input errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from mmicl_interp.cli import main
from mmicl_interp.report.html import external_resources

from .conftest import write_rows


def test_heads_and_knockout_commands_on_a_saved_model(tiny_dirs, tmp_path, capsys):
    out = tmp_path / "out"
    folder = str(tiny_dirs["llama"])
    rc = main(["heads", folder, "--prompts", "text", "--n-prompts", "6", "--shots", "2", "--ways", "2",
               "--top-k", "2", "--patch", "--out", str(out), "--quiet"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "top heads" in printed and "random" in printed
    heads = pd.read_parquet(out / "heads.parquet")
    assert {"model", "prompt_set", "metric", "layer", "head", "value"} <= set(heads.columns)
    assert set(heads["metric"]) >= {
        "prev_token",
        "prev_token_label",
        "ih",
        "tila",
        "tiia",
        "tla",
        "act_patch_head",
    }
    assert (heads["prompt_set"] == "text").all() and (heads["model"] == folder).all()
    knock = pd.read_parquet(out / "knockout.parquet")
    assert set(knock["group"]) == {"clean", "induction", "previous-token", "random"}
    page = (out / "report.html").read_text()
    assert "Knockouts vs 10 random head sets" in page and not external_resources(page)
    assert len((out / "prompts.jsonl").read_text().splitlines()) == 6

    rc = main(["knockout", folder, "--prompts", "text", "--n-prompts", "6", "--heads", "L1H2,L0H1",
               "--method", "zero", "--out", str(out), "--quiet"])  # fmt: skip
    assert rc == 0
    knock = pd.read_parquet(out / "knockout_zero_L1H2-L0H1_2shot2way_n6_seed0.parquet")  # its own file
    given = knock[(knock["group"] == "given") & (knock["metric"] == "accuracy")]
    assert given["heads"].tolist() == ["L1H2,L0H1"] and given["method"].tolist() == ["zero"]
    assert (knock["group"] == "random").sum() == 10 * 3  # 10 draws x accuracy, loss, logit_diff
    assert "accuracy with heads knocked out" in capsys.readouterr().out


def test_prompts_jsonl_recomputes_induction_scores(tiny_dirs, tmp_path):
    """An independent script: read prompts.jsonl, run plain transformers (eager attention), and
    recompute every head's induction score from the spans; it equals heads.parquet."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    rows = write_rows(tmp_path / "rows.json")
    folder = str(tiny_dirs["gpt2"])
    assert main(["heads", folder, "--prompts", f"text:{rows}", "--n-prompts", "5", "--ways", "3",
                 "--top-k", "0", "--batch-size", "2", "--out", str(out), "--quiet"]) == 0  # fmt: skip

    hf = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    records = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    total = None
    for r in records:
        with torch.no_grad():
            att = torch.stack(hf(torch.tensor([r["input_ids"]]), output_attentions=True).attentions)[:, 0]
        row = att[:, :, r["readout_position"]].numpy()  # [layer, head, key]
        to_label = np.stack([row[..., s:e].sum(-1) for s, e in r["label_spans"]], -1)
        match = np.array(r["context_labels"]) == r["target"]
        ih = to_label[..., match].mean(-1) - to_label[..., ~match].mean(-1)
        total = ih if total is None else total + ih
    expected = total / len(records)
    table = pd.read_parquet(out / "heads.parquet")
    ih = table[table["metric"] == "ih"].sort_values(["layer", "head"])
    got = ih["value"].to_numpy().reshape(expected.shape)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not (out / "knockout.parquet").exists()


def _one_line_error(capsys, argv, *needles):
    rc = main([*argv, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(("mmicl: error: ", f"mmicl {argv[0]}: error: ")) and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err
    return err


def test_bad_input_exits_2_with_one_line(tiny_dirs, tmp_path, capsys):
    folder = str(tiny_dirs["llama"])
    out = str(tmp_path / "o")
    _one_line_error(
        capsys, ["heads", "no-such-org/no-such-model", "--prompts", "text", "--out", out], "model"
    )
    _one_line_error(
        capsys,
        ["heads", str(tmp_path / "nothing"), "--prompts", "text", "--out", out],
        "no such model folder",
    )
    bad = write_rows(tmp_path / "bad.csv", [("dog", "animal")], columns=("item", "category"))
    _one_line_error(
        capsys, ["heads", folder, "--prompts", f"text:{bad}", "--out", out], "missing column label"
    )
    rows = write_rows(tmp_path / "rows.csv")
    _one_line_error(
        capsys, ["heads", folder, "--prompts", f"text:{rows}", "--shots", "5", "--out", out], "--shots"
    )
    unk = write_rows(
        tmp_path / "unk.csv", [("dog", "zebra"), ("cat", "zebra"), ("apple", "fruit"), ("pear", "fruit")]
    )
    argv = ["heads", folder, "--prompts", f"text:{unk}", "--shots", "1", "--n-prompts", "2", "--top-k", "0"]
    _one_line_error(capsys, [*argv, "--out", out], "'zebra' is not in the tokenizer's vocabulary")
    _one_line_error(capsys, ["heads", folder, "--prompts", "words", "--out", out], "--prompts")
    _one_line_error(
        capsys, ["knockout", folder, "--prompts", "text", "--heads", "L9H0", "--out", out], "--heads"
    )
    _one_line_error(capsys, ["knockout", folder, "--prompts", "text", "--heads", "L0H0", "--dtype", "int8",
                             "--out", out], "--dtype")  # fmt: skip
    _one_line_error(capsys, ["heads", folder, "--prompts", "images:/nonexistent", "--out", out], "images")
    _one_line_error(capsys, ["heads", folder, "--prompts", "text", "--top-k", "-1", "--out", out], "--top-k")


def test_unsupported_architecture_exits_2(tmp_path, capsys):
    from transformers import XLNetConfig, XLNetLMHeadModel

    from .conftest import tiny_tokenizer

    folder = tmp_path / "xlnet"
    XLNetLMHeadModel(XLNetConfig(vocab_size=64, d_model=16, n_layer=1, n_head=2, d_inner=16)).save_pretrained(
        folder
    )
    tiny_tokenizer().save_pretrained(folder)
    _one_line_error(capsys, ["heads", str(folder), "--prompts", "text", "--out", str(tmp_path / "o")],
                    "does not support the architecture XLNetLMHeadModel")  # fmt: skip
