"""``mmicl series``: head scores over a checkpoint series, checked against Hugging Face's
eager attentions; resuming; bad input (one line, exit 2, nothing written); layer-0 heads
never ranked as induction heads; and, on the shipped stdlib series, induction heads forming.

The tiny series is trained here in seconds with ``mmicl_interp.real.train_lm`` (a few
steps, a small BPE tokenizer); nothing reaches the network (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmicl_interp.cli import main
from mmicl_interp.real import series as S
from mmicl_interp.real.repeated import ordinary_token_ids, repeated_tokens
from mmicl_interp.real.train_lm import load_recipe, train_lm

SHIPPED = Path(__file__).resolve().parents[2] / "examples" / "stdlib_lm"
FAST = dict(rep_len=12, rep_seqs=6, context=64, text_seqs=4, prompts=None)
"""Small options so each checkpoint scores in well under a second."""


def tiny_recipe(**changes):
    values = dict(
        d_model=32, n_heads=4, d_mlp=64, ctx=64, batch_size=8, steps=6, n_checkpoints=2, schedule="linear",
        warmup=2, vocab_size=160, max_chars=40_000, probe_n=8, log_every=2, lr=1e-2,
    )  # fmt: skip
    values.update(changes)
    return load_recipe(None, values)


@pytest.fixture(scope="module")
def tiny_series(tmp_path_factory):
    """A trained 3-checkpoint series (steps 0, 3, 6) of a 2-layer GPT-NeoX."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny_series") / "lm"
    train_lm(tiny_recipe(), out, progress=False, log=lambda s: None)
    return out


def copy_series(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def options(**changes):
    return S.SeriesOptions(**{**FAST, **changes})


# ---------------------------------------------------------------------- against HF eager
def reference_scores(folder: Path, seqs: torch.Tensor, n: int) -> dict[str, np.ndarray]:
    """Induction and previous-token scores from plain transformers' eager ``output_attentions``,
    with loops over sequences and positions (the definitions written out)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(input_ids=seqs, output_attentions=True)
    att = np.stack([a.double().numpy() for a in out.attentions])  # [layer, batch, head, q, k]
    n_layers, n_seqs, n_heads, length, _ = att.shape
    o = length - 2 * n  # 1 with a BOS
    ind = np.zeros((n_layers, n_heads))
    prev = np.zeros((n_layers, n_heads))
    for layer in range(n_layers):
        for head in range(n_heads):
            ind_values, prev_values = [], []
            for b in range(n_seqs):
                a = att[layer, b, head]
                for j in range(n):  # second copy: token r_{j+1} at o + n + j; after its first: o + j + 1
                    q = o + n + j
                    assert seqs[b, q] == seqs[b, o + j]
                    ind_values.append(a[q, o + j + 1])
                prev_values += [a[t, t - 1] for t in range(1, length)]
            ind[layer, head] = np.mean(ind_values)
            prev[layer, head] = np.mean(prev_values)
    logp = torch.log_softmax(out.logits.double(), -1)
    second = [-float(logp[b, p, seqs[b, p + 1]]) for b in range(n_seqs) for p in range(o + n, o + 2 * n - 1)]
    uniform = np.mean([1 / (o + n + j + 1) for j in range(n)])
    return {"rep_induction": ind, "rep_prev_token": prev, "rep_loss_second": np.mean(second),
            "rep_induction_uniform": uniform}  # fmt: skip


def per_head(table: pd.DataFrame, step: int, metric: str) -> np.ndarray:
    rows = table[(table["step"] == step) & (table["metric"] == metric)]
    values = np.zeros((int(rows["layer"].max()) + 1, int(rows["head"].max()) + 1))
    values[rows["layer"].astype(int), rows["head"].astype(int)] = rows["value"]
    return values


def scalar(table: pd.DataFrame, step: int, metric: str) -> float:
    rows = table[(table["step"] == step) & (table["metric"] == metric)]
    assert len(rows) == 1, metric
    return float(rows["value"].iloc[0])


def test_head_scores_equal_hf_eager_attentions(tiny_series, tmp_path):
    opts = options(rep_len=10, rep_seqs=5)
    result = S.run_series(
        [str(tiny_series / "step_*")], out=tmp_path / "out", options=opts, log=lambda s: None
    )
    assert result.computed == [0, 3, 6]
    table = result.table
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_series / "step_6")
    seqs = repeated_tokens(ordinary_token_ids(tok, len(tok)), 10, 5, tok.bos_token_id, seed=0)
    assert (
        seqs.shape == (5, 21)
        and (seqs[:, 1:11] == seqs[:, 11:]).all()
        and (seqs[:, 0] == tok.bos_token_id).all()
    )
    for step in (0, 6):
        ref = reference_scores(tiny_series / f"step_{step}", seqs, 10)
        for metric in ("rep_induction", "rep_prev_token"):
            np.testing.assert_allclose(per_head(table, step, metric), ref[metric], atol=1e-5, rtol=0)
        assert scalar(table, step, "rep_loss_second") == pytest.approx(ref["rep_loss_second"], abs=1e-4)
        assert scalar(table, step, "rep_induction_uniform") == pytest.approx(
            ref["rep_induction_uniform"], abs=1e-9
        )
    # the tidy schema of the synthetic analysis, one value per row
    assert list(table.columns[:10]) == ["run", "step", "suite", "metric", "layer", "head", "src_layer",
                                        "src_head", "position", "value"]  # fmt: skip
    assert set(table["run"]) == {"lm"}
    assert {"repeated_random", "text"} <= set(table["suite"])
    for metric in ("icl_score", "loss_early", "loss_late", "rep_prev_token_uniform", "rep_loss_first"):
        assert np.isfinite(scalar(table, 6, metric))


def test_text_windows_are_olsson_tokens_at_512():
    early, late = S.text_windows(512)
    assert early[len(early) // 2] == 50 and late[len(late) // 2] == 500
    early, late = S.text_windows(64)
    assert min(early) >= 1 and max(late) <= 63


def test_icl_score_from_per_token_losses(tiny_series):
    """icl_score = mean loss over the late window minus over the early window (plain loop)."""
    from transformers import AutoModelForCausalLM

    from mmicl_interp.real.load import load_model

    loaded = load_model(str(tiny_series / "step_6"), progress=False)
    seqs = S.text_sequences(loaded.tokenizer, ["def f(x):\n    return x + 1\n" * 40], 64, 3)
    got = S.text_losses(loaded.bridge, seqs)
    model = AutoModelForCausalLM.from_pretrained(tiny_series / "step_6", attn_implementation="eager").eval()
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=seqs).logits.double(), -1)
    loss = lambda i: np.mean([-float(logp[b, i - 1, seqs[b, i]]) for b in range(3)])  # noqa: E731
    early, late = S.text_windows(64)
    want = np.mean([loss(i) for i in late]) - np.mean([loss(i) for i in early])
    assert got["icl_score"] == pytest.approx(want, abs=1e-4)
    per_seq = [
        np.mean([-float(logp[b, i - 1, seqs[b, i]]) for i in late])
        - np.mean([-float(logp[b, i - 1, seqs[b, i]]) for i in early])
        for b in range(3)
    ]
    assert got["icl_score_se"] == pytest.approx(np.std(per_seq, ddof=1) / np.sqrt(3), abs=1e-4)


# ---------------------------------------------------------------------- resuming
def test_killed_series_resumes_without_recomputing(tiny_series, tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls: list[int] = []
    kill_at: list[int] = [3]
    real = S.checkpoint_table

    def counting(*args, **kwargs):
        calls.append(kwargs["step"])
        if kwargs["step"] in kill_at:
            kill_at.clear()
            raise KeyboardInterrupt  # killed while scoring the second checkpoint
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "checkpoint_table", counting)
    with pytest.raises(KeyboardInterrupt):
        S.run_series([str(tiny_series)], out=out, options=options(), log=lambda s: None)
    first = out / "steps" / "step_0.parquet"
    assert first.is_file() and not (out / "steps" / "step_3.parquet").exists()
    assert not list((out / "steps").glob(".*.tmp"))  # nothing half-written
    mtime = first.stat().st_mtime_ns
    calls.clear()
    result = S.run_series([str(tiny_series)], out=out, options=options(), log=lambda s: None)
    assert calls == [3, 6] and result.reused == [0] and result.computed == [3, 6]
    assert first.stat().st_mtime_ns == mtime
    assert sorted(result.table["step"].unique()) == [0, 3, 6]
    calls.clear()
    again = S.run_series([str(tiny_series)], out=out, options=options(), log=lambda s: None)
    assert calls == [] and again.reused == [0, 3, 6]
    pd.testing.assert_frame_equal(again.table, result.table)
    # other options in the same folder: refused, unless --force
    with pytest.raises(S.ConfigError, match="other options"):
        S.run_series([str(tiny_series)], out=out, options=options(rep_len=8), log=lambda s: None)
    S.run_series([str(tiny_series)], out=out, options=options(rep_len=8), force=True, log=lambda s: None)
    assert calls == [0, 3, 6]


def test_new_checkpoints_extend_a_series_and_another_model_is_refused(tiny_series, tmp_path):
    out = tmp_path / "out"
    quiet = dict(out=out, options=options(), log=lambda s: None)
    first = S.run_series([str(tiny_series / "step_0"), str(tiny_series / "step_3")], **quiet)
    assert first.computed == [0, 3]
    more = S.run_series([str(tiny_series)], **quiet)  # training went on: only the new step is scored
    assert more.reused == [0, 3] and more.computed == [6]
    assert json.loads((out / "series.json").read_text())["steps_done"] == [0, 3, 6]
    other = copy_series(tiny_series, tmp_path / "other")
    for step in (0, 3, 6):
        _other_arch(other / f"step_{step}")
    with pytest.raises(S.ConfigError, match="another model"):
        S.run_series([str(other)], run_id="lm", **quiet)


def test_cli_series_resumes_and_prints(tiny_series, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["series", str(tiny_series / "step_0"), str(tiny_series / "step_6"), "--out", str(out),
            "--rep-len", "8", "--rep-seqs", "4", "--text-seqs", "2", "--context", "64",
            "--prompts", "none"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "2 checkpoints scored, 0 reused" in text and "layers >= 1" in text
    assert main([*args, "--quiet"]) == 0
    assert "0 checkpoints scored, 2 reused" in capsys.readouterr().out
    meta = json.loads((out / "series.json").read_text())
    assert meta["steps_done"] == [0, 6]


# ---------------------------------------------------------------------- bad input
def run_bad(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def bad_series(tiny_series, tmp_path, damage) -> Path:
    folder = copy_series(tiny_series, tmp_path / "series")
    damage(folder / "step_3")
    return folder


def _truncate(folder: Path) -> None:
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


def _no_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


def _bad_config(folder: Path) -> None:
    (folder / "config.json").write_text("{ not json")


def _other_arch(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))


def _other_tokenizer(folder: Path) -> None:
    data = json.loads((folder / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    a, b = list(vocab)[5:7]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (folder / "tokenizer.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    "damage, words",
    [
        (_truncate, "corrupt model.safetensors"),
        (_no_weights, "no weights"),
        (_bad_config, "corrupt config.json"),
        (_other_arch, "architecture differs"),
        (_other_tokenizer, "tokenizer differs"),
    ],
)
def test_bad_checkpoint_is_one_line_naming_it(tiny_series, tmp_path, capsys, damage, words):
    folder = bad_series(tiny_series, tmp_path, damage)
    out = tmp_path / "out"
    line = run_bad(["series", str(folder / "step_*"), "--out", str(out)], capsys)
    assert words in line and "step_3" in line
    assert not out.exists()  # nothing written


def test_bad_sources_and_options(tiny_series, tmp_path, capsys):
    out = tmp_path / "out"
    assert "no folder matches" in run_bad(["series", str(tmp_path / "nope_*"), "--out", str(out)], capsys)
    assert "no such checkpoint folder" in run_bad(
        ["series", str(tmp_path / "nope"), "--out", str(out)], capsys
    )
    odd = copy_series(tiny_series / "step_3", tmp_path / "weights_final")  # step 3 from trainer_state.json
    assert "--text" in run_bad(
        ["series", str(odd), "--out", str(out), "--text", str(tmp_path / "nope")], capsys
    )
    (odd / "trainer_state.json").unlink()
    assert "cannot tell its step" in run_bad(["series", str(odd), "--out", str(out)], capsys)
    (tmp_path / "file").write_text("x")
    line = run_bad(["series", str(tiny_series / "step_*"), "--out", str(tmp_path / "file")], capsys)
    assert "--out" in line
    assert "--prompts" in run_bad(
        ["series", str(tiny_series), "--out", str(out), "--prompts", "bogus"], capsys
    )
    bounds = [
        ("--rep-len", "1", "[2, 4096]"),
        ("--seed", "-1", "[0, "),
        ("--context", "10000000", "[8, 131072]"),
        ("--text-seqs", "0", "[1, "),
    ]
    for flag, value, allowed in bounds:
        line = run_bad(["series", str(tiny_series), "--out", str(out), flag, value], capsys)
        assert flag in line and allowed in line
    assert not out.exists()


def test_missing_revision_is_one_line(tmp_path, capsys, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import RevisionNotFoundError

    def missing(repo, filename, revision=None, **kwargs):
        err = RevisionNotFoundError.__new__(RevisionNotFoundError)
        Exception.__init__(err, f"{revision} not found")
        raise err

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", missing)
    out = tmp_path / "out"
    line = run_bad(["series", "org/model", "--revisions", "step1000,step99", "--out", str(out)], capsys)
    assert "revision 'step1000' does not exist for org/model" in line
    assert not out.exists()


def fake_hub(monkeypatch, folders: dict[str, Path]) -> list[tuple[str, list | None]]:
    """hf_hub_download / snapshot_download served from local folders, one per revision."""
    import huggingface_hub

    fetched: list[tuple[str, list | None]] = []

    def snapshot(repo, revision=None, allow_patterns=None, **kwargs):
        fetched.append((revision, allow_patterns))
        return str(folders[revision])

    monkeypatch.setattr(
        huggingface_hub, "hf_hub_download", lambda repo, f, revision=None, **kw: str(folders[revision] / f)
    )
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    return fetched


def test_hub_revisions(tiny_series, tmp_path, monkeypatch, capsys):
    fetched = fake_hub(monkeypatch, {"step0": tiny_series / "step_0", "step6": tiny_series / "step_6"})
    out = tmp_path / "hub"
    result = S.run_series(
        ["org/lm"], revisions=["step6", "step0"], out=out, options=options(), log=lambda s: None
    )
    assert result.computed == [0, 6] and set(result.table["run"]) == {"org__lm"}
    assert fetched[0][1] == S.HUB_LIGHT_FILES  # config and tokenizer of every revision first, then weights
    assert [r for r, p in fetched if p == S.HUB_LIGHT_FILES] == ["step6", "step0"]
    other = copy_series(tiny_series / "step_3", tmp_path / "other")
    _other_arch(other)
    fake_hub(monkeypatch, {"step0": tiny_series / "step_0", "step3": other})
    out2 = tmp_path / "hub2"
    line = run_bad(["series", "org/lm", "--revisions", "step0,step3", "--out", str(out2)], capsys)
    assert "org/lm@step3" in line and "architecture differs" in line and not out2.exists()


def test_uncached_revision_offline_is_one_line(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read when called; the env only at import
    line = run_bad(
        ["series", "mmicl-test/not-a-model", "--revisions", "step1", "--out", str(tmp_path / "o")], capsys
    )
    assert "mmicl-test/not-a-model" in line
    assert "--revisions" in run_bad(
        ["series", "a/b", "--revisions", "main", "--out", str(tmp_path / "o")], capsys
    )


def test_model_without_attention_is_refused(tmp_path, capsys):
    """A Mamba checkpoint (TransformerLens bridges it, but it has no attention patterns)."""
    from transformers import MambaConfig, MambaForCausalLM

    from tests.real.conftest import tiny_tokenizer

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    for step in (0, 5):
        model = MambaForCausalLM(
            MambaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, state_size=4)
        )
        model.save_pretrained(tmp_path / "mamba" / f"step_{step}")
        tok.save_pretrained(tmp_path / "mamba" / f"step_{step}")
    out = tmp_path / "out"
    line = run_bad(["series", str(tmp_path / "mamba"), "--out", str(out), "--prompts", "none"], capsys)
    assert "no attention patterns" in line and "step_0" in line
    assert not out.exists()


# ---------------------------------------------------------------------- layer 0 is never an induction head
def test_layer0_heads_never_ranked_as_induction_heads():
    from mmicl_interp.analyses.tidy import head_rows, tidy_table
    from mmicl_interp.real.heads import min_layer_of, top_heads
    from mmicl_interp.real.report import top_table

    values = torch.tensor([[0.9, 0.8], [0.1, 0.3], [0.2, 0.05]])
    assert top_heads(values, 2, min_layer_of("ih", 3)) == [(1, 1), (2, 0)]
    assert top_heads(values, 2, min_layer_of("prev_token", 3)) == [(0, 0), (0, 1)]
    assert top_heads(values, 9, 1) == [(1, 1), (2, 0), (1, 0), (2, 1)]
    table = tidy_table(
        head_rows(values, "rep_induction") + head_rows(values, "rep_prev_token"), run="r", step=5
    )
    assert S.best_heads(table, "rep_induction", 2)[["layer", "head"]].values.tolist() == [[1, 1], [2, 0]]
    assert S.best_heads(table, "rep_prev_token", 1)[["layer", "head"]].values.tolist() == [[0, 0]]
    assert S.summary(table)["induction_head"].tolist() == ["L1H1"]
    tops = top_table({"ih": values, "prev_token": values}, k=2)
    assert tops[tops["metric"] == "ih"]["head"].tolist() == ["L1H1", "L2H0"]
    assert tops[tops["metric"] == "prev_token"]["head"].tolist() == ["L0H0", "L0H1"]


def test_knockout_picks_induction_heads_from_layer1(loaded):
    from mmicl_interp.real.knockout import knockout_table
    from mmicl_interp.real.text import prompt_texts, tokenize_prompts

    model = loaded["gpt2"]
    prompts = tokenize_prompts(prompt_texts("text", shots=1, ways=2, n_prompts=4, seed=0), model.tokenizer)
    ih = torch.zeros(2, 4)
    ih[0] = 1.0  # layer 0 scores highest: it must still not be chosen
    ih[1, 2] = 0.5
    measures = {"ih": ih, "prev_token": torch.rand(2, 4)}
    table = knockout_table(model.bridge, prompts, measures=measures, top_k=2, n_random=10, methods=("zero",))
    heads = table[table["group"] == "induction"]["heads"].iloc[0]
    assert heads.split(",")[0] == "L1H2" and "L0" not in heads


# ---------------------------------------------------------------------- the shipped series
@pytest.mark.skipif(not SHIPPED.is_dir(), reason="the shipped stdlib series is not there")
def test_shipped_series_forms_induction_heads(tmp_path):
    """examples/stdlib_lm: the best induction head (layers >= 1) goes from <= 0.05 at the first
    checkpoint to >= 0.3 at the last, and the second-copy loss drops visibly once it forms."""
    opts = S.SeriesOptions(rep_seqs=16, text_seqs=8, prompts=None)
    result = S.run_series([str(SHIPPED)], out=tmp_path / "out", options=opts, log=lambda s: None)
    summ = S.summary(result.table)
    assert summ["step"].tolist() == json.loads((SHIPPED / "recipe.json").read_text())["checkpoint_steps"]
    start, end = summ.iloc[0], summ.iloc[-1]
    assert start["induction"] <= 0.05
    assert end["induction"] >= 0.3
    assert int(end["induction_head"][1]) >= 1
    assert end["rep_loss_second"] < summ["rep_loss_second"].max() - 3.0  # a visible drop once heads form
    assert end["rep_loss_second"] < end["rep_loss_first"] - 3.0  # the second copy is predicted from the first
    assert end["prev_token"] > 5 * end["prev_token_uniform"]


# ---------------------------------------------------------------------- the plain model and the bridge agree
def test_plain_transformers_scores_equal_the_bridges_hook_pattern_scores():
    """The series scores a plain transformers copy (eager ``output_attentions``): on a trained
    shipped checkpoint its head scores and copy losses equal the TransformerLens bridge's
    (``hook_pattern`` reduced in the hook), batch by batch, to 1e-5."""
    from mmicl_interp.real.load import load_model

    folder = Path(__file__).resolve().parents[2] / "examples" / "stdlib_lm" / "step_8000"
    loaded = load_model(str(folder), progress=False)
    tok = loaded.tokenizer
    seqs = repeated_tokens(ordinary_token_ids(tok, len(tok)), 12, 6, tok.bos_token_id, seed=1)
    bridge = S.repeated_scores(loaded.bridge, seqs, 12, batch_size=4)
    plain = S.hf_scores(
        S.load_scorer(folder, "step_8000", "cpu", "float32"), seqs, 12, "step_8000", batch_size=4
    )
    assert (
        float(bridge["rep_induction"].max()) > 0.3
    )  # a formed induction head: the scores are not all ~uniform
    for metric in ("rep_induction", "rep_prev_token"):
        np.testing.assert_allclose(plain[metric].numpy(), bridge[metric].numpy(), atol=1e-5, rtol=0)
    for metric in ("rep_loss_first", "rep_loss_second", "rep_induction_uniform", "rep_prev_token_uniform"):
        assert plain[metric] == pytest.approx(bridge[metric], abs=1e-5)
