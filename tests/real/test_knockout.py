"""Knockouts against HF weights with zeroed output-projection columns; means, random draws, patching."""

from __future__ import annotations

import copy

import pytest
import torch

from mmicl_interp.analyses.ablation import mean_head_outputs
from mmicl_interp.real.commands import prompt_records
from mmicl_interp.real.heads import label_logits, score_heads
from mmicl_interp.real.knockout import (
    accuracy_summary,
    corrupt_labels,
    knocked_out_logits,
    knockout_table,
    patch_heads,
    random_head_sets,
)
from mmicl_interp.real.text import build_text_prompts

from .conftest import write_rows


@pytest.fixture(scope="module")
def file_path(tmp_path_factory):
    return write_rows(tmp_path_factory.mktemp("rows") / "rows.csv")


def _zero_output_columns(hf, arch, heads, d_head):
    """A copy of the HF model whose output projection ignores the given heads' inputs."""
    model = copy.deepcopy(hf)
    with torch.no_grad():
        for layer, head in heads:
            cols = slice(head * d_head, (head + 1) * d_head)
            if arch == "llama":
                model.model.layers[layer].self_attn.o_proj.weight[:, cols] = 0.0
            else:  # GPT-2's Conv1D c_proj: weight [in, out]
                model.transformer.h[layer].attn.c_proj.weight[cols, :] = 0.0
    return model


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_zero_knockout_equals_zeroed_output_projection_columns(arch, loaded, hf_reference, file_path):
    lm, hf = loaded[arch], hf_reference[arch]
    prompts = build_text_prompts(lm.tokenizer, f"text:{file_path}", shots=2, ways=3, n_prompts=5, seed=1)
    heads = [(0, 1), (1, 3)]
    got = knocked_out_logits(lm.bridge, prompts, heads, "zero", batch_size=2)
    ref_model = _zero_output_columns(hf, arch, heads, lm.bridge.cfg.d_head)
    for b, record in enumerate(prompt_records(prompts, lm.tokenizer)):
        with torch.no_grad():
            logits = ref_model(torch.tensor([record["input_ids"]])).logits[0, record["readout_position"]]
        torch.testing.assert_close(got[b], logits[record["label_tokens"]], atol=1e-5, rtol=1e-5)
    clean = label_logits(lm.bridge, prompts, batch_size=2)
    assert not torch.allclose(clean, got, atol=1e-4)  # the knockout changed something


def test_mean_values_are_masked_means_over_all_prompts(loaded, file_path):
    """Chunked means equal the mean over the prompts with a real token at each position,
    computed from one run of all prompts (padding excluded)."""
    lm = loaded["llama"]
    prompts = build_text_prompts(lm.tokenizer, f"text:{file_path}", shots=2, ways=3, n_prompts=6, seed=0)
    heads = [(0, 2), (1, 0)]
    got = mean_head_outputs(lm.bridge, prompts, heads, batch_size=4)
    zs = {}
    hooks = [
        (f"blocks.{layer}.attn.hook_z", lambda z, hook: zs.__setitem__(hook.name, z.detach()))
        for layer in (0, 1)
    ]
    with torch.no_grad():
        lm.bridge.run_with_hooks(prompts.inputs, **prompts.kwargs, fwd_hooks=hooks)
    mask = prompts.token_mask
    for (layer, head), value in got.items():
        z = zs[lm.bridge.hook_dict[f"blocks.{layer}.attn.hook_z"].name][:, :, head]
        for t in range(prompts.n_positions):
            rows = mask[:, t]
            torch.testing.assert_close(value[t], z[rows, t].mean(0), atol=1e-6, rtol=1e-5)


def test_random_draws_avoid_measured_heads():
    draws = random_head_sets(4, 4, 3, 12, exclude=[(0, 0), (1, 1)], seed=0)
    assert len(draws) == 12 and len({tuple(d) for d in draws}) > 1
    for d in draws:
        assert len(set(d)) == 3 and (0, 0) not in d and (1, 1) not in d


def test_knockout_table_groups_and_interval(loaded):
    lm = loaded["gpt2"]
    prompts = build_text_prompts(lm.tokenizer, "text", shots=2, ways=2, n_prompts=6, seed=0)
    measures = score_heads(lm.bridge, prompts, batch_size=3).measures
    table = knockout_table(lm.bridge, prompts, measures=measures, top_k=2, n_random=10, batch_size=3)
    acc = table[table["metric"] == "accuracy"]
    for method in ("zero", "mean"):
        random = acc[(acc["group"] == "random") & (acc["method"] == method)]
        assert len(random) == 10 and random["draw"].tolist() == list(range(10))
        assert (random["k"] == 2).all()
    summary = accuracy_summary(table)
    rand = summary[summary["group"] == "random"].iloc[0]
    values = acc[(acc["group"] == "random") & (acc["method"] == rand["method"])]["value"]
    assert rand["low"] <= rand["ablated"] <= rand["high"]
    assert rand["ablated"] == pytest.approx(values.mean())
    ind = acc[(acc["group"] == "induction") & (acc["method"] == "zero")].iloc[0]
    expected = (
        knocked_out_logits(lm.bridge, prompts, _parse(ind["heads"]), "zero").argmax(-1) == prompts.targets
    )
    assert ind["value"] == pytest.approx(expected.float().mean().item())


def _parse(text):
    from mmicl_interp.analyses.ablation import parse_heads

    return parse_heads(text)


def test_label_corruption_and_patching(loaded, file_path):
    lm = loaded["llama"]
    prompts = build_text_prompts(lm.tokenizer, f"text:{file_path}", shots=2, ways=3, n_prompts=8, seed=4)
    clean, corrupted = corrupt_labels(prompts)
    assert 0 < len(clean) <= len(prompts)
    for b in range(len(clean)):
        alt = int(clean.alternatives[b])
        assert alt != int(clean.targets[b])
        alt_span = next(
            clean.label_spans[b, i].tolist()
            for i in range(clean.n_exemplars)
            if clean.context_labels[b, i] == alt
        )
        alt_ids = clean.inputs[b, alt_span[0] : alt_span[1]]
        changed = torch.zeros(clean.n_positions, dtype=torch.bool)
        for i in range(clean.n_exemplars):
            s, e = clean.label_spans[b, i].tolist()
            if clean.matches[b, i]:
                assert torch.equal(corrupted.inputs[b, s:e], alt_ids)
                changed[s:e] = True
        assert torch.equal(corrupted.inputs[b, ~changed], clean.inputs[b, ~changed])
    whole, info = patch_heads(lm.bridge, prompts, batch_size=len(prompts))
    parts, _ = patch_heads(lm.bridge, prompts, batch_size=3)
    assert whole.shape == (2, 4)
    torch.testing.assert_close(parts, whole, atol=1e-4, rtol=1e-4)  # batching does not change it
    assert info["n_prompts"] == len(clean)


def test_patching_equals_swapping_o_proj_inputs_in_plain_transformers(loaded, hf_reference, file_path):
    """Each head's patched value, recomputed without TransformerLens: the clean run's input
    columns of that head at ``o_proj`` replace the corrupted run's, prompt by prompt, and the
    mean logit difference is normalised by the clean and corrupted ones."""
    lm, hf = loaded["llama"], hf_reference["llama"]
    prompts = build_text_prompts(lm.tokenizer, f"text:{file_path}", shots=2, ways=3, n_prompts=6, seed=4)
    got, _ = patch_heads(lm.bridge, prompts, batch_size=4)
    clean, corrupted = corrupt_labels(prompts)
    d_head = lm.bridge.cfg.d_head
    records = list(
        zip(prompt_records(clean, lm.tokenizer), prompt_records(corrupted, lm.tokenizer), strict=True)
    )

    def ld(record, swap=None):
        """Logit difference target - alternative at the read-out; ``swap`` = (layer, head, clean input)."""
        handle = None
        if swap is not None:
            layer, head, z = swap
            cols = slice(head * d_head, (head + 1) * d_head)

            def pre(module, args):
                x = args[0].clone()
                x[..., cols] = z[..., cols]
                return (x,)

            handle = hf.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(pre)
        try:
            with torch.no_grad():
                logits = hf(torch.tensor([record["input_ids"]])).logits[0, record["readout_position"]]
        finally:
            if handle is not None:
                handle.remove()
        tokens = record["label_tokens"]
        return (logits[tokens[record["target"]]] - logits[tokens[record["alternative"]]]).item()

    def o_proj_input(record, layer):
        kept = {}
        handle = hf.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(
            lambda module, args: kept.setdefault("z", args[0].clone())
        )
        try:
            with torch.no_grad():
                hf(torch.tensor([record["input_ids"]]))
        finally:
            handle.remove()
        return kept["z"]

    clean_ld = sum(ld(c) for c, _ in records) / len(records)
    corrupt_ld = sum(ld(x) for _, x in records) / len(records)
    assert abs(clean_ld - corrupt_ld) > 1e-3  # the corruption moves the logit difference
    want = torch.zeros_like(got)
    for layer in range(got.shape[0]):
        for head in range(got.shape[1]):
            patched = [ld(x, (layer, head, o_proj_input(c, layer))) for c, x in records]
            want[layer, head] = (sum(patched) / len(patched) - corrupt_ld) / (clean_ld - corrupt_ld)
    torch.testing.assert_close(got.to(want.dtype), want, atol=1e-4, rtol=1e-4)
    assert want.abs().max() > 1e-2  # some head moves it: the comparison is not 0 == 0
