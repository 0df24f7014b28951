"""Patching: corruptions, the normalised metric, TransformerLens activation patching, path and
attribution patching, on a random tiny model (exact invariants) and the trained ICL model."""

from dataclasses import replace

import pytest
import torch

from mmicl_interp.analyses.patching import (
    attribution_patch,
    corrupt_batch,
    logit_diff,
    patch_head_outputs,
    patch_head_outputs_by_pos,
    patch_resid_pre,
    patching_setup,
    patching_table,
    path_patch,
    prepare_patching,
)
from mmicl_interp.analyses.tidy import COLUMNS
from tests.test_prompts import LABEL_TOKENS, ToyLM, toy_patterns, toy_prompts


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.flatten().argsort().argsort().float()
    rb = b.flatten().argsort().argsort().float()
    return torch.corrcoef(torch.stack([ra, rb]))[0, 1].item()


@pytest.fixture
def icl_batch(tiny_task):
    return tiny_task.suites(1, 48)["icl"]


def test_label_corruption_swaps_only_the_matching_labels_for_one_wrong_label(tiny_task, icl_batch):
    layout = tiny_task.layout
    corrupted, alt = corrupt_batch(icl_batch, tiny_task, layout, "label", seed=0)
    matches = icl_batch.matches()
    assert matches.any(1).all()  # icl sequences always hold the query's class
    assert (alt != icl_batch.targets).all()
    labels, items = layout.labels(), layout.items()
    new = corrupted.inputs[:, labels]
    old = icl_batch.inputs[:, labels]
    expected = tiny_task.label_vectors[alt][:, None].expand_as(new)
    assert torch.equal(new[matches], expected[matches])
    assert torch.equal(new[~matches], old[~matches])
    assert torch.equal(corrupted.inputs[:, items], icl_batch.inputs[:, items])
    assert torch.equal(corrupted.inputs[:, -1], icl_batch.inputs[:, -1])
    assert torch.equal(corrupted.targets, icl_batch.targets)
    assert not corrupted.matches().any()
    again, alt2 = corrupt_batch(icl_batch, tiny_task, layout, "label", seed=0)
    assert torch.equal(again.inputs, corrupted.inputs) and torch.equal(alt, alt2)


def test_item_corruption_swaps_only_the_matching_items_for_a_fresh_class(tiny_task, icl_batch):
    layout = tiny_task.layout
    corrupted, alt = corrupt_batch(icl_batch, tiny_task, layout, "item", seed=1)
    matches = icl_batch.matches()
    items, labels = layout.items(), layout.labels()
    new, old = corrupted.inputs[:, items], icl_batch.inputs[:, items]
    assert (new[matches] != old[matches]).any(-1).all()
    assert torch.equal(new[~matches], old[~matches])
    assert torch.equal(corrupted.inputs[:, labels], icl_batch.inputs[:, labels])
    assert (corrupted.context_classes[matches] == -1).all()
    # all fresh items of a sequence share one new class: they are close to each other
    for b in range(len(icl_batch)):
        fresh = new[b, matches[b]]
        cos = torch.cosine_similarity(fresh[:, None], fresh[None, :], dim=-1)
        assert cos.min() > 0.9
    assert (alt != icl_batch.targets).all()
    in_context = (icl_batch.context_labels == alt[:, None]).any(1)
    has_other = (icl_batch.context_labels != icl_batch.targets[:, None]).any(1)
    assert torch.equal(in_context, has_other)


def test_unknown_corruption_names_the_allowed_ones(tiny_task, icl_batch):
    with pytest.raises(ValueError, match="kind: must be one of label, item, item_m1, item_m2; got 'query'"):
        corrupt_batch(icl_batch, tiny_task, tiny_task.layout, "query")


def test_metric_is_one_on_the_clean_run_and_zero_on_the_corrupted_run(tiny_task, tiny_model, icl_batch):
    setup = prepare_patching(tiny_model, icl_batch, tiny_task, tiny_task.layout, "label")
    assert setup.metric(setup.clean_logits).item() == pytest.approx(1.0, abs=1e-5)
    assert setup.metric(setup.corrupt_logits).item() == pytest.approx(0.0, abs=1e-5)
    assert (setup.clean.model_kwargs["pos_shift"] == 0).all()
    assert (setup.clean_batch.pos_shift == 0).all()
    ld = logit_diff(setup.clean_logits, setup.correct, setup.alt)
    assert ld.mean().item() == pytest.approx(setup.clean_ld)


def test_activation_patching_matches_hand_patching_and_known_zeros(tiny_task, tiny_model, icl_batch):
    setup = prepare_patching(tiny_model, icl_batch, tiny_task, tiny_task.layout, "label")
    heads = patch_head_outputs(tiny_model, setup)
    assert heads.shape == (2, 2)
    clean_z = setup.clean_cache["blocks.1.attn.hook_z"]

    def hook(z, hook):
        z = z.clone()
        z[:, :, 0] = clean_z[:, :, 0]
        return z

    with torch.no_grad():
        logits = tiny_model.run_with_hooks(setup.corrupted.inputs, fwd_hooks=[("blocks.1.attn.hook_z", hook)])
    assert heads[1, 0].item() == pytest.approx(setup.metric(logits).item(), abs=1e-5)

    n_pos = icl_batch.inputs.shape[1]
    resid = patch_resid_pre(tiny_model, setup)
    by_pos = patch_head_outputs_by_pos(tiny_model, setup)
    assert resid.shape == (2, n_pos) and by_pos.shape == (2, n_pos, 2)
    # layer-0 positions the label corruption never touches: patching them changes nothing
    untouched = [p for p in range(n_pos) if p not in tiny_task.layout.label_positions]
    assert resid[0, untouched].abs().max() < 1e-5


def test_path_patching_shape_nan_pattern_and_bad_inputs(tiny_task, tiny_model, icl_batch):
    setup = prepare_patching(tiny_model, icl_batch, tiny_task, tiny_task.layout, "item")
    paths = path_patch(tiny_model, setup)
    assert set(paths) == {"k", "q", "v"}
    for values in paths.values():
        assert values.shape == (4, 4)
        assert values[:2, 2:].isfinite().all()  # layer 0 -> layer 1
        assert values[:, :2].isnan().all() and values[2:].isnan().all()
    assert set(path_patch(tiny_model, setup, inputs=("k",))) == {"k"}
    with pytest.raises(ValueError, match="inputs: must be a non-empty subset of k, q, v"):
        path_patch(tiny_model, setup, inputs=("o",))


def test_attribution_has_the_right_shapes_and_approximates_patching_at_init(tiny_task, tiny_model, icl_batch):
    setup = prepare_patching(tiny_model, icl_batch, tiny_task, tiny_task.layout, "label")
    attr = attribution_patch(tiny_model, setup)
    n_pos = icl_batch.inputs.shape[1]
    assert attr["head_out"].shape == (2, 2)
    assert attr["head_out_by_pos"].shape == (2, n_pos, 2)
    assert attr["resid_pre"].shape == (2, n_pos)
    # the last layer's head outputs reach the read-out through the final norm only:
    # at init both are near-linear, so attribution ~ activation patching there
    act = patch_head_outputs(tiny_model, setup)
    torch.testing.assert_close(attr["head_out"][1], act[1], rtol=0.1, atol=0.05)


def test_attribution_is_the_directional_derivative_of_the_metric(tiny_task, tiny_model, icl_batch):
    """Attribution = d metric / dt at t = 0 of the corrupted run with the activation moved to
    ``act_corrupt + t (act_clean - act_corrupt)``: checked by central differences, patching by
    hand with a forward hook, in float64 (so the difference quotient is exact to ~1e-8)."""
    model = tiny_model.double().eval()
    tiny_task.label_vectors = tiny_task.label_vectors.double()
    batch = replace(icl_batch, inputs=icl_batch.inputs.double())
    setup = prepare_patching(model, batch, tiny_task, tiny_task.layout, "label")
    attr = attribution_patch(model, setup)
    clean_in, corrupt_in = setup.clean_batch.inputs, setup.corrupted_batch.inputs
    target, alt = icl_batch.targets, setup.alt

    def ld(logits):  # mean logit difference, by hand
        return (logits[torch.arange(len(target)), target] - logits[torch.arange(len(target)), alt]).mean()

    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean_in)
        corrupt_logits, corrupt_cache = model.run_with_cache(corrupt_in)
        clean_ld, corrupt_ld = ld(model(clean_in)), ld(corrupt_logits)

    def derivative(name, where, eps=1e-4):
        delta = clean_cache[name] - corrupt_cache[name]
        values = []
        for t in (eps, -eps):

            def hook(act, hook, t=t):
                act = act.clone()
                act[where] = corrupt_cache[name][where] + t * delta[where]
                return act

            with torch.no_grad():
                logits = model.run_with_hooks(corrupt_in, fwd_hooks=[(name, hook)])
            values.append((ld(logits) - corrupt_ld) / (clean_ld - corrupt_ld))
        return ((values[0] - values[1]) / (2 * eps)).item()

    every = slice(None)
    for layer in range(2):
        for head in range(2):
            want = derivative(f"blocks.{layer}.attn.hook_z", (every, every, head))
            assert attr["head_out"][layer, head].item() == pytest.approx(want, rel=1e-5, abs=1e-7)
    want = derivative("blocks.1.attn.hook_z", (every, 3, 0))  # head L1H0 at position 3 only
    assert attr["head_out_by_pos"][1, 3, 0].item() == pytest.approx(want, rel=1e-5, abs=1e-7)
    label = tiny_task.layout.label_positions[0]
    want = derivative("blocks.0.hook_resid_pre", (every, label))
    assert attr["resid_pre"][0, label].item() == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert abs(want) > 1e-4  # a label position the corruption changed: a non-trivial check


def test_attribution_agrees_with_activation_patching_on_the_trained_model(icl_run):
    run, model = icl_run.run, icl_run.model
    batch = icl_run.suites["icl"][:128]
    for kind in ("label", "item"):
        setup = prepare_patching(model, batch, run.task, run.layout, kind)
        act_resid = patch_resid_pre(model, setup)
        attr = attribution_patch(model, setup)
        assert _spearman(act_resid, attr["resid_pre"]) > 0.5, kind
        if kind == "label":  # the induction head carries the label: the top head of both
            act_heads = patch_head_outputs(model, setup)
            assert act_heads.argmax() == attr["head_out"].argmax() == 1  # L1H0


def test_trained_prev_token_head_feeds_the_induction_head_through_its_keys(icl_run):
    run, model = icl_run.run, icl_run.model
    setup = prepare_patching(model, icl_run.suites["icl"][:128], run.task, run.layout, "item")
    paths = {c: v[0, 1].item() for c, v in path_patch(model, setup).items()}  # L0H0 -> L1H0
    assert paths["k"] > 0.5
    assert paths["k"] > 5 * max(abs(paths["q"]), abs(paths["v"]))


def test_patching_table_is_tidy(tiny_task, tiny_model, icl_batch):
    df = patching_table(tiny_model, icl_batch, tiny_task, tiny_task.layout, "item", run="r", step=3)
    assert list(df.columns) == list(COLUMNS) and df["position"].isna().all()
    assert set(df["metric"]) == {
        "act_patch_head",
        "attr_patch_head",
        "path_patch_k",
        "path_patch_q",
        "path_patch_v",
    }
    assert len(df) == 2 * 4 + 3 * 4  # 4 heads x 2 + 3 inputs x (2 senders x 2 receivers)
    path = df[df.metric == "path_patch_k"]
    assert (path["layer"] == 1).all() and (path["src_layer"] == 0).all()
    assert df[df.metric == "act_patch_head"]["src_layer"].isna().all()
    assert str(df["layer"].dtype) == "Int64" and set(df["step"]) == {3}


# ---------------------------------------------------------------------- token prompts (the seam)
def _label_corrupted(prompts):
    """Each matching exemplar's label tokens now name one wrong label (the alternative)."""
    alt = (prompts.targets + 1) % len(LABEL_TOKENS)
    tokens = prompts.inputs.clone()
    for b in range(len(prompts)):
        for i in range(prompts.n_exemplars):
            if prompts.matches[b, i] and prompts.exemplar_mask[b, i]:
                tokens[b, prompts.label_spans[b, i, 0]] = LABEL_TOKENS[alt[b]]
    return replace(prompts, inputs=tokens, alternatives=alt), alt


def test_head_patching_and_attribution_on_token_prompts_match_hand_computations():
    clean = toy_prompts()
    corrupted, alt = _label_corrupted(clean)
    model = ToyLM(toy_patterns(clean)).double().requires_grad_(False)  # frozen: attribution still works
    setup = patching_setup(model, clean, corrupted, kind="label")
    rows = torch.arange(len(clean))

    def ld(out):  # logit difference at each read-out row, over the labels' first tokens, by hand
        at = out[rows, clean.readout_position]
        tokens = torch.tensor(LABEL_TOKENS)
        return (at[rows, tokens[clean.targets]] - at[rows, tokens[alt]]).mean()

    with torch.no_grad():
        clean_out, clean_cache = model.run_with_cache(clean.inputs, **clean.kwargs)
        corrupt_out, corrupt_cache = model.run_with_cache(corrupted.inputs, **corrupted.kwargs)
    clean_ld, corrupt_ld = ld(clean_out), ld(corrupt_out)
    assert setup.clean_ld == pytest.approx(clean_ld.item()) and setup.corrupt_ld == pytest.approx(
        corrupt_ld.item()
    )

    def patched(name, where, t=1.0):
        def hook(act, hook):
            act = act.clone()
            act[where] = corrupt_cache[name][where] + t * (
                clean_cache[name][where] - corrupt_cache[name][where]
            )
            return act

        with torch.no_grad():
            out = model.run_with_hooks(corrupted.inputs, **corrupted.kwargs, fwd_hooks=[(name, hook)])
        return ((ld(out) - corrupt_ld) / (clean_ld - corrupt_ld)).item()

    heads = patch_head_outputs(model, setup)
    attr = attribution_patch(model, setup)["head_out"]
    every, eps = slice(None), 1e-5
    for layer in range(2):
        for head in range(2):
            where = (every, every, head)
            name = f"blocks.{layer}.attn.hook_z"
            assert heads[layer, head].item() == pytest.approx(patched(name, where), abs=1e-9)
            slope = (patched(name, where, eps) - patched(name, where, -eps)) / (2 * eps)
            assert attr[layer, head].item() == pytest.approx(slope, rel=1e-5, abs=1e-8)
    assert heads.abs().max() > 0.05  # the corruption matters to some head
