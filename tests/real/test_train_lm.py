"""``mmicl train-lm``: a small HF causal LM trained on the Python standard library's source
into a ``step_<n>`` series (seconds here: a few steps of a tiny model), seeded and
loadable; recipe checks; the shipped series and its recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmicl_interp.cli import main
from mmicl_interp.config import ConfigError
from mmicl_interp.real import train_lm as T
from tests.real.test_series import SHIPPED, tiny_recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("lm") / "a"
    result = T.train_lm(tiny_recipe(), out, progress=False, log=lambda s: None)
    return out, result


def test_series_folders_are_ordinary_hf_checkpoints(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mmicl_interp.real.load import load_model

    out, result = trained
    assert result.steps == [0, 3, 6]
    assert sorted(p.name for p in out.glob("step_*")) == ["step_0", "step_3", "step_6"]
    assert not list(out.glob(".step_*"))  # no temporary folder left
    for step in result.steps:
        folder = out / f"step_{step}"
        assert json.loads((folder / "trainer_state.json").read_text())["step"] == step
        assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(out / "step_6")
    tok = AutoTokenizer.from_pretrained(out / "step_6")
    assert type(model).__name__ == "GPTNeoXForCausalLM" and model.config.num_hidden_layers == 2
    ids = tok("def f(x):\n    return x")["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.decode(ids[1:]) == "def f(x):\n    return x"
    loaded = load_model(str(out / "step_6"), progress=False)  # the TransformerLens bridge path
    assert loaded.bridge.cfg.n_layers == 2 and loaded.bridge.cfg.n_heads == 4
    meta = json.loads((out / "recipe.json").read_text())
    assert meta["complete"] and meta["recipe"]["steps"] == 6 and meta["checkpoint_steps"] == [0, 3, 6]
    assert meta["corpus"]["source"] == "python-stdlib" and meta["corpus"]["n_held_out_files"] > 0
    assert meta["repeats_mixed_in"] is True  # the default recipe mixes repeated spans in
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 3, 6]
    assert {"best_induction", "best_prev_token", "rep_loss_second", "held_out_loss"} <= set(log[0])
    assert log[-1]["held_out_loss"] < log[0]["held_out_loss"]


def test_training_is_seeded(trained, tmp_path):
    out, _ = trained
    T.train_lm(tiny_recipe(), tmp_path / "b", progress=False, log=lambda s: None)
    for step in (0, 6):
        a = load_file(out / f"step_{step}" / "model.safetensors")
        b = load_file(tmp_path / "b" / f"step_{step}" / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (out / "step_6" / "tokenizer.json").read_text() == (
        tmp_path / "b" / "step_6" / "tokenizer.json"
    ).read_text()


def test_rerun_and_other_recipe(trained):
    out, _ = trained
    again = T.train_lm(tiny_recipe(), out, progress=False, log=lambda s: None)
    assert again.already_complete
    with pytest.raises(ConfigError, match="another recipe"):
        T.train_lm(tiny_recipe(lr=5e-3), out, progress=False, log=lambda s: None)


def test_held_out_split_is_by_file_and_disjoint():
    files = T.stdlib_files()
    assert files == sorted(files) and len(files) > 100
    assert not any(f.startswith(("test/", "site-packages/")) or "_sysconfigdata" in f for f in files)
    held = [f for f in files if T.is_held_out(f, 10)]
    assert 0.05 < len(held) / len(files) < 0.15
    assert len(T.held_out_texts(10)) == len(held)


def test_repeated_spans_are_copies():
    recipe = tiny_recipe(repeat_frac=1.0, repeat_len=[5, 9], batch_size=64)
    stream = torch.arange(10_000)  # all distinct: a repeat shows up as equal tokens
    batch = T.make_batch(stream, recipe, torch.Generator().manual_seed(0), bos=-1)
    assert batch.shape == (64, 64) and (batch[:, 0] == -1).all()
    for row in batch[:, 1:]:
        values, counts = row.unique(return_counts=True)
        repeated = int((counts > 1).sum())
        assert 5 <= repeated <= 9
    noisy = tiny_recipe(repeat_frac=1.0, repeat_len=[6, 6], batch_size=16, repeat_source="random")
    batch = T.make_batch(
        torch.zeros(10_000, dtype=torch.long), noisy, torch.Generator().manual_seed(1), 7, 50
    )
    for row in batch[:, 1:]:  # a stream of zeros: the only non-zero tokens are the random span, twice
        where = (row != 0).nonzero().flatten()
        assert 7 not in row.tolist() and len(where) <= 12
        values = row[where]
        assert sorted(values.tolist()) == sorted(values[: len(values) // 2].tolist() * 2)
    plain = T.make_batch(
        stream, tiny_recipe(batch_size=4, repeat_frac=0.0), torch.Generator().manual_seed(0), bos=-1
    )
    assert all(int((row[1:].unique(return_counts=True)[1] > 1).sum()) == 0 for row in plain)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--set", "arch=rnn"], "recipe.arch"),
        (["--set", "bogus=1"], "unknown key(s) bogus"),
        (["--set", "d_model=30"], "recipe.d_model"),
        (["--set", "repeat_frac=0.5", "--set", "repeat_len=[4, 100]"], "recipe.repeat_len"),
        (["--set", "repeat_len=[9, 4]"], "recipe.repeat_len"),
        (["--recipe", "/nope.json"], "--recipe"),
        (["--set", "seed=-1"], "recipe.seed"),
        (["--set", "steps=1000000000"], "[1, 100000000]"),
        (["--set", "rotary_pct=0"], "recipe.rotary_pct"),
    ],
)
def test_bad_recipe_is_one_line(tmp_path, capsys, args, words):
    code = main(["train-lm", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err
    assert not (tmp_path / "o").exists()


def test_recipe_file_toml(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[recipe]\nsteps = 10\nlr = 0.005\ntokenizer = "bytes"\n')
    recipe = T.load_recipe(path, {"steps": 12})
    assert (recipe.steps, recipe.lr, recipe.tokenizer) == (12, 0.005, "bytes")
    assert recipe.checkpoint_steps()[0] == 0 and recipe.checkpoint_steps()[-1] == 12


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="the shipped stdlib series is not there")
def test_shipped_series_is_small_and_has_its_recipe():
    meta = json.loads((SHIPPED / "recipe.json").read_text())
    recipe = T.load_recipe(SHIPPED / "recipe.json")
    assert recipe.checkpoint_steps() == meta["checkpoint_steps"] and meta["complete"]
    assert sorted(int(p.name.split("_")[1]) for p in SHIPPED.glob("step_*")) == meta["checkpoint_steps"]
    assert T.series_size_bytes(SHIPPED) <= 20 * 2**20
    assert Path(SHIPPED / "log.jsonl").is_file()
