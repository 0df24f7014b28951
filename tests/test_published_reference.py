"""analyses/published_reference.py: the rerunnable reference of the published code.

The published code is not here in CI, so most tests build a stand-in code folder (a tiny
model.py / dataset.py exposing the same names, with trivial math) and run the script on it
with --allow-other-commit. An opt-in test runs the real checkout for 20 steps when the
environment variable MMICL_PUBLISHED_CODE points at one.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmicl_interp.sweep import published_run

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "analyses" / "published_reference.py"
SUITES = {"test", "icl", "icl_flip", "iwl"}

FAKE_MODEL = '''
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelArgs:
    dim: int = 16
    n_layers: int = 1
    n_heads: int = 1
    n_labels: int = 4
    rms_norm: bool = True
    rope: bool = False
    norm_eps: float = 1e-5
    max_position_embeddings: int = 9
    rope_theta: float = 10000
    mlp_bias: bool = True
    use_alibi: bool = False
    use_hybrid: bool = False


class Transformer(nn.Module):
    """A stand-in: one linear map of the last position to the label logits."""

    def __init__(self, args):
        super().__init__()
        self.out = nn.Linear(args.dim, args.n_labels)

    def forward(self, x):
        return self.out(x[:, -1, :])
'''

FAKE_DATASET = '''
import numpy as np
import torch
from torch.utils.data import IterableDataset


def get_mus_label_class(K, L, D):
    mus_label = np.random.normal(size=(L, D)) / np.sqrt(D)
    mus_class = np.random.normal(size=(K, D)) / np.sqrt(D)
    return mus_label, mus_class, np.tile(np.arange(L), K // L)


def generate_input_seqs(mus_label, mus_class, labels_class, N, S, Nmax, eps=0.1, B=0, p_B=0, P=None,
                        p_C=0, flip_labels=False, output_target_labels=False, no_repeats=False,
                        seq_labels=False, rope=True, hybrid=False):
    """Stand-in sequences: the query item at the last position, its label one-hot."""
    K, D = mus_class.shape
    width = D if rope else 2 * Nmax + 1 + D
    target = np.random.choice(K, size=S, p=P)
    inputs = np.zeros((S, 2 * N + 1, width))
    inputs[:, -1, width - D:] = mus_class[target] + eps * np.random.normal(size=(S, D)) / np.sqrt(D)
    labels = np.zeros((S, mus_label.shape[0]), dtype=bool)
    labels[np.arange(S), labels_class[target]] = True
    return torch.FloatTensor(inputs), torch.FloatTensor(labels)


class ICLDataset(IterableDataset):
    def __init__(self, mus_label, mus_class, labels_class, N, S, Nmax, eps=0.1, B=0, p_B=0, p_C=0, P=None,
                 datasize=10, flip_labels=False, no_repeats=False, hybrid=False, rope=False,
                 output_target_labels=False, seq_labels=False):
        super().__init__()
        self.args = (mus_label, mus_class, labels_class, N, S, Nmax)
        self.kw = dict(eps=eps, B=B, p_B=p_B, P=P, p_C=p_C, rope=rope, hybrid=hybrid)
        self.datasize = datasize

    def __iter__(self):
        for _ in range(self.datasize):
            yield generate_input_seqs(*self.args, **self.kw)
'''

TINY = [
    "--K",
    "16",
    "--seeds",
    "0",
    "--steps",
    "5",
    "--eval-every",
    "2",
    "--eval-size",
    "20",
    "--N",
    "4",
    "--D",
    "8",
    "--L",
    "4",
    "--batch",
    "8",
]


def _load():
    spec = importlib.util.spec_from_file_location("published_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ref():
    return _load()


@pytest.fixture
def fake_code(tmp_path):
    code = tmp_path / "published-code"
    code.mkdir()
    (code / "model.py").write_text(FAKE_MODEL)
    (code / "dataset.py").write_text(FAKE_DATASET)
    return code


def _args(code: Path, tmp_path: Path, *extra: str, out: str = "runs", results: str = "results") -> list[str]:
    return ["--code", str(code), "--out", str(tmp_path / out), "--results", str(tmp_path / results), *extra]


def _run(ref, argv: list[str], capsys) -> tuple[int, str, str]:
    rc = ref.main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _one_line_error(rc: int, err: str, option: str) -> None:
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert option in lines[0], lines[0]
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- the commit check


def test_other_code_is_refused_in_one_line_by_the_command(fake_code, tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), *_args(fake_code, tmp_path, *TINY)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    _one_line_error(out.returncode, out.stderr, "--code")
    assert "--allow-other-commit" in out.stderr and "differ" in out.stderr
    assert not (tmp_path / "runs" / "K16_seed0").exists()


def test_a_git_checkout_at_another_commit_is_refused(ref, fake_code, tmp_path, capsys):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-qm", "stand-in"]):
        subprocess.run(["git", "-C", str(fake_code), *cmd], check=True, env=env, capture_output=True)
    # even with the files' hashes recorded as the pinned ones, the HEAD is another commit
    hashes = {
        name: hashlib.sha256((fake_code / name).read_bytes()).hexdigest()
        for name in ("model.py", "dataset.py")
    }
    saved = published_run.PINNED_SHA256  # the command's module: the script only calls it
    published_run.PINNED_SHA256 = hashes
    try:
        rc, _, err = _run(ref, _args(fake_code, tmp_path, *TINY), capsys)
    finally:
        published_run.PINNED_SHA256 = saved
    _one_line_error(rc, err, "--code")
    assert "HEAD" in err


def test_matching_hashes_without_git_are_accepted_and_recorded(ref, fake_code, tmp_path, capsys, monkeypatch):
    hashes = {
        name: hashlib.sha256((fake_code / name).read_bytes()).hexdigest()
        for name in ("model.py", "dataset.py")
    }
    monkeypatch.setattr(published_run, "PINNED_SHA256", hashes)
    rc, _, err = _run(ref, _args(fake_code, tmp_path, *TINY), capsys)
    assert rc == 0, err
    code = json.loads((tmp_path / "runs" / "K16_seed0" / "manifest.json").read_text())["code"]
    assert code["matches_pinned"] and code["checked_by"] == "sha256" and not code["allow_other_commit"]
    assert code["pinned_commit"] == ref.PINNED_COMMIT


# ----------------------------------------------------------------------------- output format


def test_metrics_manifest_and_tables_have_the_toolkit_format(ref, fake_code, tmp_path, capsys):
    argv = _args(fake_code, tmp_path, "--allow-other-commit", *TINY[:2], "32", *TINY[2:4], "1", *TINY[4:])
    rc, out, err = _run(ref, argv, capsys)
    assert rc == 0, err
    for K in (16, 32):
        for seed in (0, 1):
            run = tmp_path / "runs" / f"K{K}_seed{seed}"
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            assert all(set(r) == {"step", "suite", "accuracy", "loss", "chance"} for r in rows)
            assert {r["suite"] for r in rows} == SUITES
            assert sorted({r["step"] for r in rows}) == [0, 2, 4, 5]
            assert len(rows) == 4 * 4
            assert all(r["chance"] == 1 / 4 and 0 <= r["accuracy"] <= 1 and r["loss"] > 0 for r in rows)
            assert all(isinstance(r["step"], int) for r in rows)
            manifest = json.loads((run / "manifest.json").read_text())
            assert manifest["status"] == "complete" and manifest["seed"] == seed and manifest["K"] == K
            assert manifest["settings"]["steps"] == 5 and manifest["settings"]["batch"] == 8
            assert (
                manifest["code"]["allow_other_commit"] is True and manifest["code"]["matches_pinned"] is False
            )
            assert manifest["torch"] == torch.__version__ and manifest["wall_time_s"] > 0
            assert manifest["command"].startswith(".venv/bin/python analyses/published_reference.py --code")
            assert manifest["torch_threads"] == 1
    table = _csv(tmp_path / "results" / "published_reference.csv")
    assert list(table[0]) == ["K", "seed", "step", "suite", "accuracy", "loss"]
    assert len(table) == 2 * 2 * 4 * 4
    md = (tmp_path / "results" / "published_reference.md").read_text()
    assert "--allow-other-commit" in md and ref.PINNED_COMMIT in md and "range" in md
    assert "| 16 | 0 | " in md and "| 32 | 1 | " in md


def test_runs_are_deterministic_and_leave_the_process_as_it_was(ref, fake_code, tmp_path, capsys):
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for out in ("a", "b"):
        assert (
            ref.main(_args(fake_code, tmp_path, "--allow-other-commit", *TINY, out=out, results=out + "r"))
            == 0
        )
    assert torch.equal(torch.rand(3), expected)  # the global RNG state was restored
    assert torch.get_num_threads() == threads
    assert "model" not in sys.modules and "dataset" not in sys.modules
    a = (tmp_path / "a" / "K16_seed0" / "metrics.jsonl").read_text()
    assert a == (tmp_path / "b" / "K16_seed0" / "metrics.jsonl").read_text()
    capsys.readouterr()


def test_the_batches_match_a_one_worker_dataloader(ref, fake_code):
    """The in-process stream is the one the published one-worker DataLoader yields."""
    from torch.utils.data import DataLoader

    sys.path.insert(0, str(fake_code))
    try:
        spec = importlib.util.spec_from_file_location("fake_dataset", fake_code / "dataset.py")
        dataset = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(dataset)
    finally:
        sys.path.remove(str(fake_code))

    def stream(ours: bool) -> list:
        torch.manual_seed(5)
        np.random.seed(5)
        task = dataset.get_mus_label_class(16, 4, 8)
        data = dataset.ICLDataset(*task, N=4, S=8, Nmax=32, datasize=3)
        np.random.normal(size=10)  # the main process draws its eval sets in between
        if ours:
            return list(ref.batch_stream(data))
        return list(DataLoader(data, batch_size=None, num_workers=1))

    ours, real = stream(True), stream(False)
    assert len(ours) == len(real) == 3
    for (xa, ya), (xb, yb) in zip(ours, real, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# ----------------------------------------------------------------------------- rerun and table merge


def test_a_rerun_reuses_finished_runs_and_retrains_unfinished_ones(
    ref, fake_code, tmp_path, capsys, monkeypatch
):
    argv = _args(fake_code, tmp_path, "--allow-other-commit", *TINY[:2], "32", *TINY[2:])
    assert ref.main(argv) == 0
    capsys.readouterr()
    before = (tmp_path / "runs" / "K16_seed0" / "metrics.jsonl").read_text()
    table = (tmp_path / "results" / "published_reference.csv").read_text()
    # mark one run unfinished (as if killed): only that one trains again
    manifest_path = tmp_path / "runs" / "K32_seed0" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["status"] = "running"
    manifest_path.write_text(json.dumps(manifest))
    trained = []
    real_train = published_run.train_run

    def spy(pub, s, K, seed, on_eval=None):
        trained.append((K, seed))
        return real_train(pub, s, K, seed, on_eval)

    monkeypatch.setattr(published_run, "train_run", spy)
    rc, out, err = _run(ref, argv, capsys)
    assert rc == 0, err
    assert trained == [(32, 0)]
    assert "K 16 seed 0: complete" in out and "reused" in out
    assert (tmp_path / "runs" / "K16_seed0" / "metrics.jsonl").read_text() == before
    assert (tmp_path / "results" / "published_reference.csv").read_text() == table  # deterministic rerun


def test_a_finished_run_with_other_settings_is_not_overwritten(ref, fake_code, tmp_path, capsys):
    assert ref.main(_args(fake_code, tmp_path, "--allow-other-commit", *TINY)) == 0
    capsys.readouterr()
    rc, _, err = _run(ref, _args(fake_code, tmp_path, "--allow-other-commit", *TINY, "--eps", "0.2"), capsys)
    _one_line_error(rc, err, "--out")
    assert "eps" in err


def test_other_runs_rows_are_kept_in_the_table(ref, fake_code, tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    other = "K,seed,step,suite,accuracy,loss\n999,7,0,icl,0.5,1.0\n999,7,0,iwl,0.25,2.0\n"
    (results / "published_reference.csv").write_text(other)
    assert ref.main(_args(fake_code, tmp_path, "--allow-other-commit", *TINY)) == 0
    K32 = [*TINY[:1], "32", *TINY[2:]]
    assert ref.main(_args(fake_code, tmp_path, "--allow-other-commit", *K32)) == 0
    rows = _csv(results / "published_reference.csv")
    runs = {(r["K"], r["seed"]) for r in rows}
    assert runs == {("16", "0"), ("32", "0"), ("999", "7")}
    assert len([r for r in rows if r["K"] == "999"]) == 2
    # rerunning K 16 into a fresh run folder replaces only K 16's rows
    n = len(rows)
    assert ref.main(_args(fake_code, tmp_path, "--allow-other-commit", *TINY, out="runs2")) == 0
    rows2 = _csv(results / "published_reference.csv")
    assert len(rows2) == n and {(r["K"], r["seed"]) for r in rows2} == runs
    md = (results / "published_reference.md").read_text()
    assert "Rows kept from earlier commands" in md and "K 999 seed 7" in md
    capsys.readouterr()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (["--K", "18"], "--K"),
        (["--K", "2"], "--K"),
        (["--steps", "0"], "--steps"),
        (["--eval-every", "0"], "--eval-every"),
        (["--L", "3"], "--L"),
        (["--N", "5"], "--N"),
        (["--N", "40"], "--N"),
        (["--B", "3"], "--B"),
        (["--p-B", "1.5"], "--p-B"),
        (["--eps", "nan"], "--eps"),
        (["--heads", "2"], "--heads"),
        (["--seeds", "-1"], "--seeds"),
        (["--seeds", "1", "1"], "--seeds"),
        (["--positions", "learned"], "--positions"),
        (["--steps", "x"], "--steps"),
        (["--bogus"], "arguments"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(ref, fake_code, tmp_path, capsys, extra, option):
    rc, _, err = _run(ref, _args(fake_code, tmp_path, "--allow-other-commit", *TINY, *extra), capsys)
    _one_line_error(rc, err, option)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_missing_code_folder_and_files_are_one_line(ref, fake_code, tmp_path, capsys):
    rc, _, err = _run(ref, _args(tmp_path / "nowhere", tmp_path, *TINY), capsys)
    _one_line_error(rc, err, "--code")
    (fake_code / "dataset.py").unlink()
    rc, _, err = _run(ref, _args(fake_code, tmp_path, "--allow-other-commit", *TINY), capsys)
    _one_line_error(rc, err, "--code")
    assert "dataset.py" in err
    rc, _, err = _run(ref, ["--K", "32"], capsys)
    _one_line_error(rc, err, "--code")


def test_broken_code_and_a_foreign_table_are_one_line(ref, fake_code, tmp_path, capsys):
    (fake_code / "model.py").write_text("raise ImportError('broken')\n")
    rc, _, err = _run(ref, _args(fake_code, tmp_path, "--allow-other-commit", *TINY), capsys)
    _one_line_error(rc, err, "--code")
    (fake_code / "model.py").write_text(FAKE_MODEL)
    assert not (tmp_path / "runs").exists()  # nothing made before the code imports
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "published_reference.csv").write_text("a,b\n1,2\n")
    rc, _, err = _run(ref, _args(fake_code, tmp_path, "--allow-other-commit", *TINY), capsys)
    _one_line_error(rc, err, "--results")
    (tmp_path / "results" / "published_reference.csv").unlink()
    (tmp_path / "afile").write_text("")
    rc, _, err = _run(ref, _args(fake_code, tmp_path, "--allow-other-commit", *TINY, out="afile"), capsys)
    _one_line_error(rc, err, "--out")


# ----------------------------------------------------------------------------- the real published code


@pytest.mark.skipif(
    not os.environ.get("MMICL_PUBLISHED_CODE"),
    reason="set MMICL_PUBLISHED_CODE to a checkout of the published code (commit 5e9cd68) to run",
)
def test_the_real_published_code_runs_20_steps(ref, tmp_path, capsys):
    code = os.environ["MMICL_PUBLISHED_CODE"]
    argv = [
        "--code",
        code,
        "--K",
        "2048",
        "--seeds",
        "0",
        "--steps",
        "20",
        "--eval-every",
        "10",
        "--out",
        str(tmp_path / "runs"),
        "--results",
        str(tmp_path / "results"),
    ]
    rc, _, err = _run(ref, argv, capsys)
    assert rc == 0, err
    run = tmp_path / "runs" / "K2048_seed0"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["code"]["matches_pinned"] and manifest["settings"]["width"] == 129
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in rows}) == [0, 10, 20] and {r["suite"] for r in rows} == SUITES
    assert all(r["chance"] == 1 / 32 and 0 <= r["accuracy"] <= 1 for r in rows)
    # deterministic: the same command into another folder gives the same numbers
    argv2 = [*argv[:-4], "--out", str(tmp_path / "runs2"), "--results", str(tmp_path / "results2")]
    assert ref.main(argv2) == 0
    assert (tmp_path / "runs2" / "K2048_seed0" / "metrics.jsonl").read_text() == (
        run / "metrics.jsonl"
    ).read_text()


def test_the_help_description_is_the_first_line_of_the_scripts_docstring(ref):
    """The package builds the parser, so it cannot read the script's docstring: the two must agree."""
    assert ref.__doc__.strip().splitlines()[0] == published_run.DESCRIPTION
    assert published_run.SCRIPT == "analyses/published_reference.py" and SCRIPT.is_file()
