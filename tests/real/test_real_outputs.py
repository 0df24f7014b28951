"""Issue 22 on real models: knockouts never replace results, an unreachable hub fails fast,
fixed prompt sets cap ``--n-prompts`` and say so (tiny offline models, see conftest.py)."""

from __future__ import annotations

import hashlib
import time

import pandas as pd
import pytest

from mmicl_interp.cli import main


def _hashes(folder) -> dict[str, str]:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_knockouts_into_a_heads_folder_write_their_own_files(tiny_dirs, tmp_path, capsys):
    """The README runs ``heads`` and then two knockouts into one folder: every result stays."""
    out = tmp_path / "out"
    model = str(tiny_dirs["llama"])
    common = ["--prompts", "text", "--n-prompts", "6", "--out", str(out), "--quiet"]
    assert main(["heads", model, *common, "--top-k", "2"]) == 0
    heads_files = _hashes(out)
    assert {"heads.parquet", "prompts.jsonl", "knockout.parquet", "report.html", "heads.json"} <= set(
        heads_files
    )
    assert main(["knockout", model, *common, "--top-k", "2", "--method", "mean"]) == 0
    assert main(["knockout", model, *common, "--heads", "L1H2,L0H1", "--method", "zero"]) == 0
    after = _hashes(out)
    assert {k: after[k] for k in heads_files} == heads_files  # heads' files: untouched
    names = sorted(p.name for p in out.glob("knockout_*.parquet"))
    assert names == [
        "knockout_mean_top2_2shot2way_n6_seed0.parquet",
        "knockout_zero_L1H2-L0H1_2shot2way_n6_seed0.parquet",
    ]
    for name in names:
        page = (out / name.replace(".parquet", ".html")).read_text()
        assert "Knockouts vs 10 random head sets" in page and "ih: " in page  # with heads' heatmaps
    zero = pd.read_parquet(out / names[1])
    assert set(zero.loc[zero["group"] == "given", "method"]) == {"zero"}
    # the same knockout again: the same file, rewritten with the same numbers
    capsys.readouterr()
    assert main(["knockout", model, *common, "--heads", "L1H2,L0H1", "--method", "zero"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / names[1]), zero)


def test_heads_with_other_settings_is_refused_without_force(tiny_dirs, tmp_path, capsys):
    out = tmp_path / "out"
    model = str(tiny_dirs["gpt2"])
    common = ["--prompts", "text", "--n-prompts", "4", "--top-k", "0", "--out", str(out), "--quiet"]
    assert main(["heads", model, *common]) == 0
    before = _hashes(out)
    capsys.readouterr()
    assert main(["heads", model, *common, "--seed", "3"]) == 2
    line = _one_line(capsys)
    assert "--out" in line and "seed: 0 -> 3" in line and "--force" in line
    assert _hashes(out) == before
    assert main(["heads", model, *common]) == 0  # the same settings: fine
    assert main(["heads", model, *common, "--seed", "3", "--force"]) == 0
    assert _hashes(out)["heads.parquet"] != before["heads.parquet"]


def test_an_offline_hub_model_that_is_not_cached_fails_in_seconds(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    assert main(["heads", "gpt2", "--prompts", "text", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    line = _one_line(capsys)
    assert "model: gpt2 is not in the local Hugging Face cache" in line and "HF_HUB_OFFLINE=1" in line
    assert time.monotonic() - started < 10 and not (tmp_path / "o").exists()


def test_an_unreachable_hub_fails_in_seconds(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    started = time.monotonic()
    argv = ["knockout", "Qwen/Qwen2.5-0.5B", "--prompts", "text", "--top-k", "2"]
    argv += ["--out", str(tmp_path / "o")]
    assert main([*argv, "--quiet"]) == 2
    line = _one_line(capsys)
    assert "the hub cannot be reached" in line and "local model folder" in line
    assert time.monotonic() - started < 10


def test_a_cached_model_with_the_hub_unreachable_loads_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    from mmicl_interp.real import load

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)  # restored afterwards

    monkeypatch.setattr(load, "in_local_cache", lambda name: True)
    monkeypatch.setattr(load, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    load.check_hub_access("gpt2")
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"  # monkeypatch restores it after the test


@pytest.mark.parametrize("n_prompts", [4, 50])
def test_open_mi_caps_n_prompts_at_its_queries(tmp_path, n_prompts):
    from mmicl_interp.real.images import open_mi_episodes

    from .tiny_vlm import write_open_mi

    folder = write_open_mi(tmp_path / "data" / "open_mi", n_queries=4)
    episodes = open_mi_episodes(folder, shots=2, ways=2, n_prompts=n_prompts, seed=0)
    assert len(episodes) == 4
