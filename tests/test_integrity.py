"""Checksums of a run's safetensors files: a flipped bit is reported, not silently analysed.

The expected checksum is recomputed here from the raw file bytes with hashlib (the data
section after the 8-byte length and JSON header, then the other metadata as canonical JSON),
independently of mmicl_interp.checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmicl_interp import checkpoints as ck
from mmicl_interp import load_run
from mmicl_interp.cli import main
from mmicl_interp.io import CorruptFileError
from mmicl_interp.train.trainer import train
from tests.conftest import tiny_run_config

EXAMPLE = Path(__file__).resolve().parents[1] / "checkpoints" / "example"


def split(raw: bytes) -> tuple[dict, int]:
    """Header JSON and the offset of the data section, read by hand."""
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), 8 + n


def expected_sha256(raw: bytes) -> str:
    header, start = split(raw)
    meta = {k: v for k, v in header["__metadata__"].items() if k != "sha256"}
    canonical = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw[start:] + canonical).hexdigest()


def flip_data_bit(path: Path, at: float = 0.5, bit: int = 3) -> None:
    """Flip one bit inside the data section, leaving the header byte for byte intact."""
    raw = bytearray(path.read_bytes())
    _, start = split(bytes(raw))
    index = start + int((len(raw) - start) * at)
    raw[index] ^= 1 << bit
    path.write_bytes(bytes(raw))
    assert path.read_bytes()[:start] == bytes(raw[:start])


@pytest.fixture
def example(tmp_path) -> Path:
    return Path(shutil.copytree(EXAMPLE, tmp_path / "example"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("integrity") / "run"
    train(tiny_run_config(), out, progress=False)
    return out


def test_every_written_file_carries_the_sha256_of_its_data_and_metadata(tiny_run):
    files = [ck.ckpt_path(tiny_run, s) for s in ck.list_checkpoints(tiny_run)]
    files += [tiny_run / ck.TASK, tiny_run / ck.TRAIN_STATE]
    for path in files:
        raw = path.read_bytes()
        header, _ = split(raw)
        assert header["__metadata__"]["sha256"] == expected_sha256(raw), path.name
        assert ck.verify_file(path) is True


def test_shipped_example_carries_checksums_and_its_tensors_load_unchanged():
    paths = sorted(EXAMPLE.rglob("*.safetensors"))
    assert len(paths) >= 41 and EXAMPLE / ck.TASK in paths
    for path in paths:
        raw = path.read_bytes()
        assert split(raw)[0]["__metadata__"]["sha256"] == expected_sha256(raw), path.name
    # the checksummed weights are what safetensors itself reads from the file
    run = load_run(EXAMPLE)
    tensors = load_file(str(ck.ckpt_path(EXAMPLE, 400)))
    model = run.model(400)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tensors.items())


def test_flipped_bit_in_checkpoint_data_raises_naming_the_step(example):
    path = ck.ckpt_path(example, 400)
    flip_data_bit(path)
    load_file(str(path))  # safetensors alone reads the damaged file without complaint (the bug)
    run = load_run(example)
    with pytest.raises(CorruptFileError, match=r"step_0000400\.safetensors.*step 400.*retrain") as info:
        run.model(400)
    assert "\n" not in str(info.value)
    assert info.value.path == path
    run.model(350)  # an intact neighbour still loads
    with pytest.raises(CorruptFileError, match="step 400"):
        ck.read_weights(path)


def test_cli_ablate_on_flipped_checkpoint_exits_2_with_one_line(example, capsys):
    flip_data_bit(ck.ckpt_path(example, 400), at=0.9, bit=0)
    assert main(["ablate", str(example), "--step", "400", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("mmicl: error:") and "step_0000400" in err and "step 400" in err
    assert "mmicl train CONFIG --out NEW_DIR" in err


def test_flipped_bit_in_task_file_raises_and_cli_exits_2(example, capsys):
    flip_data_bit(example / ck.TASK, at=0.25, bit=6)
    with pytest.raises(CorruptFileError, match=r"task\.safetensors.*task file.*retrain"):
        _ = load_run(example).task
    assert main(["ablate", str(example), "--step", "400", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "task.safetensors" in err


def test_flipped_bit_in_stored_config_is_caught(example):
    """The checksum also covers the metadata: eps 0.1 -> 0.3 is one bit ('1' ^ 2 == '3')."""
    path = example / ck.TASK
    raw = bytearray(path.read_bytes())
    header, start = split(bytes(raw))
    index = raw.index(b'\\"eps\\": 0.1', 8, start) + len(b'\\"eps\\": 0.')
    raw[index] ^= 0b10
    path.write_bytes(bytes(raw))
    assert json.loads(split(bytes(raw))[0]["__metadata__"]["config"])["eps"] == 0.3
    with pytest.raises(CorruptFileError, match="task file"):
        _ = load_run(example).task


def test_flipped_bit_in_train_state_raises_naming_its_step(tiny_run, tmp_path):
    path = tmp_path / ck.TRAIN_STATE
    shutil.copy(tiny_run / ck.TRAIN_STATE, path)
    flip_data_bit(path, at=0.5, bit=1)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    with pytest.raises(CorruptFileError, match="train state of step 12.*delete it"):
        ck.load_train_state(path, optimizer, torch.Generator())


def test_legacy_files_without_checksum_load_unverified_and_can_be_upgraded(example):
    path = ck.ckpt_path(example, 400)
    tensors = load_file(str(path))
    save_file(tensors, str(path), metadata={"step": "400", "format": "mmicl-weights-1"})
    task_path = example / ck.TASK
    task_tensors = load_file(str(task_path))
    config = split(task_path.read_bytes())[0]["__metadata__"]["config"]
    save_file(task_tensors, str(task_path), metadata={"config": config})
    assert ck.verify_file(path) is False and ck.verify_file(task_path) is False

    run = load_run(example)
    assert torch.equal(run.task.class_means, task_tensors["class_means"])
    model = run.model(400)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in tensors.items())

    before = path.read_bytes()
    assert ck.add_checksum(path) is True and ck.add_checksum(path) is False
    after = path.read_bytes()
    assert after[split(after)[1] :] == before[split(before)[1] :]  # tensor bytes untouched
    assert split(after)[0]["__metadata__"]["sha256"] == expected_sha256(after)
    flip_data_bit(path)
    with pytest.raises(CorruptFileError, match="step 400"):
        load_run(example).model(400)
