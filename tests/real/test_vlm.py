"""Vision-language models offline: loading by path, image prompts, and the attention measures
checked against HF eager ``output_attentions`` computed independently."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("PIL", reason="image prompts need pillow (the vlm extra)")

from mmicl_interp.analyses.attention import attention_measures  # noqa: E402
from mmicl_interp.config import ConfigError  # noqa: E402
from mmicl_interp.real import vlm  # noqa: E402
from mmicl_interp.real.images import build_image_prompts  # noqa: E402
from tests.real import tiny_vlm  # noqa: E402

FAMILIES = ("llava", "qwen")


@pytest.fixture(autouse=True)
def _offline_vlm(monkeypatch):
    """No hub, no in-process pip: Qwen's adapter without its torchvision demand, and
    TransformerLens's torchvision installer replaced by one that fails the test if called."""
    from transformer_lens.model_bridge.sources.transformers import helpers
    from transformer_lens.model_bridge.supported_architectures.qwen2_5_vl import Qwen2_5_VLArchitectureAdapter

    calls = []

    def forbidden():
        calls.append(1)
        raise AssertionError("TransformerLens tried to pip install torchvision")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(Qwen2_5_VLArchitectureAdapter, "required_libraries", [])
    monkeypatch.setattr(helpers, "_ensure_torchvision", forbidden)
    yield
    assert not calls


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """family -> folder of a saved tiny model; plus the image sets."""
    root = tmp_path_factory.mktemp("vlm")
    return {
        "llava": tiny_vlm.save_tiny_llava(root / "llava"),
        "qwen": tiny_vlm.save_tiny_qwen(root / "qwen"),
        "images": tiny_vlm.write_class_folder(root / "imgs"),
        "open_mi": tiny_vlm.write_open_mi(root / "data" / "open_mi"),
    }


def _load(saved, family):
    loaded = vlm.load_vlm(str(saved[family]))
    loaded.bridge.eval()
    return loaded


def _one_line(err: ConfigError, field: str) -> None:
    assert err.field == field
    assert "\n" not in str(err)


# ---------------------------------------------------------------------- loading
def test_not_a_vlm_is_none(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, vocab_size=10).save_pretrained(
        tmp_path
    )
    assert vlm.load_vlm(str(tmp_path)) is None
    assert vlm.load_vlm(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("family", FAMILIES)
def test_load_by_path_matches_hf(saved, family):
    from transformers import AutoModelForImageTextToText

    loaded = _load(saved, family)
    assert loaded.is_vlm and loaded.name == str(saved[family])
    expected = {"llava": "LlavaProcessor", "qwen": "Qwen2VLImageProcessorPil"}[family]
    assert type(loaded.processor).__name__ == expected
    prompts = build_image_prompts(loaded, f"images:{saved['images']}", shots=1, ways=2, n_prompts=2, seed=0)
    hf = AutoModelForImageTextToText.from_pretrained(saved[family], attn_implementation="eager").eval()
    out, _ = prompts.run(loaded.bridge)
    for b in range(len(prompts)):
        n = int(prompts.token_mask[b].sum())
        with torch.no_grad():
            ref = hf(**_hf_inputs(prompts, b)).logits[0]
        torch.testing.assert_close(out[b, :n], ref, atol=1e-4, rtol=1e-4)


def test_qwen_without_torchvision_is_one_line(saved, monkeypatch):
    from transformer_lens.model_bridge.supported_architectures.qwen2_5_vl import Qwen2_5_VLArchitectureAdapter

    if vlm.torchvision_problem() is None:
        pytest.skip("torchvision imports here")
    monkeypatch.setattr(Qwen2_5_VLArchitectureAdapter, "required_libraries", ["torchvision"])
    with pytest.raises(ConfigError, match="needs torchvision.*pip install torchvision") as info:
        vlm.load_vlm(str(saved["qwen"]))
    _one_line(info.value, "model")


def test_unbatch_vision_kwargs():
    pixels = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    grid = torch.tensor([[[1, 2, 2], [0, 0, 0]], [[1, 1, 2], [1, 1, 2]]])
    out = vlm.unbatch_vision_kwargs(
        {
            "pixel_values": pixels,
            "pixel_values__rows": torch.tensor([1, 3]),
            "image_grid_thw": grid,
            "image_grid_thw__rows": torch.tensor([1, 2]),
            "attention_mask": torch.ones(2, 4),
        },
        torch.float16,
    )
    assert set(out) == {"pixel_values", "image_grid_thw", "attention_mask"}
    assert out["pixel_values"].dtype == torch.float16
    assert out["pixel_values"].tolist() == [[0, 1], [6, 7], [8, 9], [10, 11]]
    assert out["image_grid_thw"].tolist() == [[1, 2, 2], [1, 1, 2], [1, 1, 2]]


# ---------------------------------------------------------------------- prompts
def _hf_inputs(prompts, b):
    """Prompt b alone, unpadded, in the HF model's own layout (rows cut by hand)."""
    n = int(prompts.token_mask[b].sum())
    kw = prompts.model_kwargs
    inputs = {
        "input_ids": prompts.inputs[b : b + 1, :n],
        "attention_mask": kw["attention_mask"][b : b + 1, :n],
    }
    for key in ("pixel_values", "image_grid_thw"):
        if key in kw:
            inputs[key] = kw[key][b, : int(kw[key + "__rows"][b])]
    if "mm_token_type_ids" in kw:
        inputs["mm_token_type_ids"] = kw["mm_token_type_ids"][b : b + 1, :n]
    return inputs


def _check_spans(loaded, prompts, image_token, tokens_per_image):
    tok = loaded.tokenizer
    for b in range(len(prompts)):
        n = int(prompts.token_mask[b].sum())
        ids = prompts.inputs[b, :n].tolist()
        image_positions = [t for t, i in enumerate(ids) if i == image_token]
        spans = prompts.item_spans["m1"][b].tolist()
        covered = [t for s, e in spans for t in range(s, e)]
        # every image token is in an exemplar's span or the query image (the last ones)
        query = image_positions[len(covered) :]
        assert covered + query == image_positions
        assert [e - s for s, e in spans] == tokens_per_image[b][:-1]
        assert len(query) == tokens_per_image[b][-1] and query[0] > spans[-1][1]
        assert prompts.readout_position[b] == n - 1
        labels = prompts.label_spans[b].tolist()
        for i, (s, e) in enumerate(labels):
            assert spans[i][1] < s and (i + 1 == len(spans) or e <= spans[i + 1][0])
            word = tok.decode(ids[s:e]).strip()
            context = int(prompts.context_labels[b, i])
            assert prompts.readout.label_tokens[b, context] == ids[s]
            assert tok.convert_tokens_to_ids(word) == ids[s]
        assert prompts.targets[b] != prompts.alternatives[b]


@pytest.mark.parametrize("family", FAMILIES)
def test_image_folder_prompts(saved, family):
    loaded = _load(saved, family)
    prompts = build_image_prompts(loaded, f"images:{saved['images']}", shots=2, ways=3, n_prompts=4, seed=1)
    assert prompts.label_spans.shape == (4, 6, 2) and prompts.readout.label_tokens.shape == (4, 3)
    config = vlm.hf_config(loaded)
    if family == "qwen":
        grid = prompts.model_kwargs["image_grid_thw"]
        per_image = [
            [int(g.prod()) // 4 for g in grid[b, : int(prompts.model_kwargs["image_grid_thw__rows"][b])]]
            for b in range(4)
        ]
        assert len({tuple(p) for p in per_image}) > 1  # images of different sizes: padded rows are exercised
    else:
        per_image = [[4] * 7 for _ in range(4)]  # (16 px / 8 px patches)^2, CLS dropped
    _check_spans(loaded, prompts, config.image_token_id, per_image)
    names = [loaded.tokenizer.decode([int(t)]) for t in prompts.readout.label_tokens[0]]
    assert set(names) <= set(tiny_vlm.LABELS[:3])


@pytest.mark.parametrize("shots", [1, 2])
def test_open_mi_prompts(saved, shots):
    """shots=2 reads 2-shot.json (fixed demonstrations); shots=1 draws them from query.json."""
    loaded = _load(saved, "llava")
    prompts = build_image_prompts(
        loaded, f"open_mi:{saved['open_mi']}", shots=shots, ways=2, n_prompts=4, seed=0
    )
    queries = json.loads((saved["open_mi"] / "query.json").read_text())
    tok = loaded.tokenizer
    for b in range(4):
        ids = prompts.inputs[b].tolist()
        shown = [tok.decode(ids[s:e]).strip() for s, e in prompts.label_spans[b].tolist()]
        candidates = [tok.decode([int(t)]) for t in prompts.readout.label_tokens[b]]
        assert candidates[int(prompts.targets[b])] == queries[b]["answer"]
        assert shown == [candidates[int(c)] for c in prompts.context_labels[b]]
        assert sorted(shown) == sorted(candidates * shots)
        if shots == 2:  # the file's order: other class first, then the answer
            assert shown[1] == queries[b]["answer"]
    _check_spans(loaded, prompts, vlm.hf_config(loaded).image_token_id, [[4] * (2 * shots + 1)] * 4)


# ---------------------------------------------------------------------- measures vs HF eager
def _reference_measures(attentions, prompts, b):
    """The measures of prompt b from HF attentions [layer][1, head, q, k], by plain loops."""
    spans = prompts.item_spans["m1"][b].tolist()
    labels = prompts.label_spans[b].tolist()
    match = (prompts.context_labels[b] == prompts.targets[b]).tolist()
    q = int(prompts.readout_position[b])
    out = {
        k: torch.zeros(len(attentions), attentions[0].shape[1], dtype=torch.float64)
        for k in ("prev_token", "prev_token_label", "ih", "tila", "tla", "tiia")
    }
    for layer, att in enumerate(attentions):
        for h in range(att.shape[1]):
            a = att[0, h].double()
            n = a.shape[0]
            out["prev_token"][layer, h] = sum(a[t, t - 1] for t in range(1, n)) / (n - 1)
            out["prev_token_label"][layer, h] = sum(
                a[s, spans[i][1] - 1] for i, (s, _) in enumerate(labels)
            ) / len(labels)
            to_label = [a[q, s:e].sum() for s, e in labels]
            to_item = [a[q, s:e].sum() for s, e in spans]
            hit = [v for v, m in zip(to_label, match, strict=True) if m]
            miss = [v for v, m in zip(to_label, match, strict=True) if not m]
            out["tila"][layer, h] = sum(hit) / len(hit)
            out["ih"][layer, h] = sum(hit) / len(hit) - sum(miss) / len(miss)
            out["tla"][layer, h] = sum(to_label)
            out["tiia"][layer, h] = sum(v for v, m in zip(to_item, match, strict=True) if m) / len(hit)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_measures_match_hf_eager(saved, family):
    from transformers import AutoModelForImageTextToText

    loaded = _load(saved, family)
    prompts = build_image_prompts(loaded, f"images:{saved['images']}", shots=2, ways=2, n_prompts=3, seed=2)
    measures = attention_measures(loaded.bridge, prompts, chunk=2)  # chunks slice the vision inputs
    hf = AutoModelForImageTextToText.from_pretrained(saved[family], attn_implementation="eager").eval()
    total = None
    for b in range(len(prompts)):
        with torch.no_grad():
            attentions = hf(**_hf_inputs(prompts, b), output_attentions=True).attentions
        ref = _reference_measures(attentions, prompts, b)
        total = ref if total is None else {k: total[k] + ref[k] for k in ref}
    assert set(measures) == set(total)
    for name, value in total.items():
        torch.testing.assert_close(measures[name].double(), value / len(prompts), atol=1e-5, rtol=0, msg=name)


# ---------------------------------------------------------------------- errors
def test_bad_image_input_is_one_line(saved, tmp_path):
    loaded = _load(saved, "llava")
    imgs = saved["images"]

    def build(spec, shots=1, ways=2):
        with pytest.raises(ConfigError) as info:
            build_image_prompts(loaded, spec, shots=shots, ways=ways, n_prompts=2, seed=0)
        return info.value

    _one_line(build(f"images:{tmp_path / 'nowhere'}"), "--prompts")
    _one_line(build(f"pictures:{imgs}"), "--prompts")
    _one_line(build(f"images:{imgs}", ways=4), "--ways")
    err = build(f"images:{imgs}", shots=3)  # 3 images per class: 3 shots + 1 query do not fit
    _one_line(err, "--shots")
    assert "4 images per class" in err.message
    _one_line(build(f"open_mi:{tmp_path}"), "--prompts")
    _one_line(build(f"open_mi:{saved['open_mi']}", shots=5), "--shots")  # query.json banks hold 3 images
    odd = tmp_path / "odd"
    tiny_vlm.write_class_folder(odd, n_classes=2, per_class=2)
    (odd / "dax").rename(odd / "glorp")
    err = build(f"images:{odd}")
    _one_line(err, "--prompts")
    assert "'glorp' is not in the tokenizer's vocabulary" in err.message


@pytest.mark.parametrize(("family", "spec"), [("llava", "images"), ("qwen", "open_mi")])
def test_heads_and_knockout_commands_on_a_saved_vlm(saved, family, spec, tmp_path, capsys):
    """`mmicl heads` / `mmicl knockout` on a VLM folder: the CLI reaches the image prompts,
    writes the tidy table and prompts.jsonl, and the jsonl item spans are the exemplars'
    image-token runs (the query image's run is the one left over)."""
    import pandas as pd

    from mmicl_interp.cli import main

    out = tmp_path / family
    common = [str(saved[family]), "--prompts", f"{spec}:{saved[spec]}", "--shots", "1", "--ways", "2"]
    common += ["--n-prompts", "3", "--seed", "0", "--quiet", "--out", str(out)]
    assert main(["heads", *common, "--top-k", "1", "--n-random", "10"]) == 0
    table = pd.read_parquet(out / "heads.parquet")
    config = vlm.hf_config(_load(saved, family))
    text = getattr(config, "text_config", config)
    n_heads = text.num_hidden_layers * text.num_attention_heads
    assert (table["metric"] == "ih").sum() == n_heads
    rows = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        image = (torch.tensor(row["input_ids"]) == config.image_token_id).nonzero().flatten().tolist()
        spans = [range(s, e) for per_modality in row["item_spans"].values() for s, e in per_modality]
        items = sorted(p for span in spans for p in span)
        query = sorted(set(image) - set(items))  # the query image: one more run, after the exemplars
        assert set(items) <= set(image) and query == list(range(query[0], query[-1] + 1))
        assert max(items) < query[0] < row["readout_position"]
    capsys.readouterr()
    assert main(["knockout", *common, "--top-k", "1", "--method", "zero", "--n-random", "10"]) == 0
    knock = pd.read_parquet(out / "knockout_zero_top1_1shot2way_n3_seed0.parquet")  # beside heads' files
    assert {"clean", "delta"} <= set(knock.columns) and len(knock) > 0
