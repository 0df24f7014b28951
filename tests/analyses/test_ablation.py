"""Head ablation: parsing, exact invariants on a random tiny model, and the trained induction head."""

import copy

import pytest
import torch

from mmicl_interp.analyses.ablation import (
    ABLATION_EXTRA,
    ablate_each_head,
    ablate_heads,
    ablated_logits,
    ablation_over_checkpoints,
    ablation_values,
    check_heads,
    derangement,
    format_heads,
    parse_heads,
)
from mmicl_interp.analyses.attention import context_label_accuracy
from mmicl_interp.analyses.tidy import COLUMNS
from mmicl_interp.data.task import Batch
from tests.test_prompts import LABEL_TOKENS, ToyLM, toy_patterns, toy_prompts


@pytest.fixture
def tiny_suites(tiny_task, tiny_model):
    return tiny_task.suites(1, 32, max_shift=tiny_model.max_shift_for(tiny_task.layout.n_ctx))


def test_parse_and_format_heads_round_trip_keeping_order():
    assert parse_heads("L1H0,L0H1") == [(1, 0), (0, 1)]
    assert parse_heads(" l2h3 , L0H0") == [(2, 3), (0, 0)]
    assert format_heads([(1, 0), (0, 0)]) == "L1H0,L0H0"
    assert parse_heads(format_heads([(3, 7), (0, 2)])) == [(3, 7), (0, 2)]


@pytest.mark.parametrize("text", ["", "L1", "H0", "L1H0;L0H0", "LxH0", "L1H0,", "1,0"])
def test_parse_heads_rejects_malformed_text_with_an_example(text):
    with pytest.raises(ValueError, match=r"heads: .*L1H0,L0H1"):
        parse_heads(text)


def test_check_heads_rejects_out_of_range_duplicates_and_empty(tiny_model):
    # tiny_model: 2 layers, 2 heads
    with pytest.raises(ValueError, match=r"\(2, 0\) is out of range.*layers 0\.\.1 and heads 0\.\.1"):
        check_heads([(2, 0)], tiny_model)
    with pytest.raises(ValueError, match="out of range"):
        check_heads("L0H5", tiny_model)
    with pytest.raises(ValueError, match="listed twice"):
        check_heads([(0, 1), (0, 1)], tiny_model)
    with pytest.raises(ValueError, match="at least one"):
        check_heads([], tiny_model)
    with pytest.raises(ValueError, match="pair of integers"):
        check_heads([(0.5, 1)], tiny_model)
    assert check_heads("L1H1,L0H0", tiny_model) == [(1, 1), (0, 0)]


def test_unknown_method_names_the_allowed_ones(tiny_model, tiny_suites):
    with pytest.raises(ValueError, match="method: must be one of zero, mean, resample; got 'median'"):
        ablate_heads(tiny_model, tiny_suites, "L0H0", method="median")


def test_derangement_is_a_seeded_permutation_without_fixed_points():
    perm = derangement(50, seed=3)
    assert sorted(perm.tolist()) == list(range(50))
    assert (perm != torch.arange(50)).all()
    assert torch.equal(perm, derangement(50, seed=3))
    assert not torch.equal(perm, derangement(50, seed=4))
    assert derangement(1, 0).tolist() == [0]


def test_zero_ablation_equals_zeroing_the_heads_value_weights(tiny_model, tiny_suites):
    batch = tiny_suites["icl"]
    edited = copy.deepcopy(tiny_model).eval()
    with torch.no_grad():
        edited.blocks[1].attn.W_V[0].zero_()
        expected = edited(batch.inputs, batch.pos_shift)
    got = ablated_logits(tiny_model, batch, [(1, 0)], "zero")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_mean_and_resample_values_come_from_the_clean_run(tiny_model, tiny_suites):
    batch = tiny_suites["test"]
    _, cache = tiny_model.run_with_cache(batch.inputs, batch.pos_shift)
    z = cache["blocks.0.attn.hook_z"][:, :, 1]
    mean = ablation_values(tiny_model, batch, [(0, 1)], "mean")[(0, 1)]
    torch.testing.assert_close(mean, z.mean(0, keepdim=True).expand_as(z))
    resampled = ablation_values(tiny_model, batch, [(0, 1)], "resample", seed=5)[(0, 1)]
    torch.testing.assert_close(resampled, z[derangement(len(batch), 5)])
    assert not mean.requires_grad and not resampled.requires_grad  # no autograd graph kept


def test_mean_and_resample_ablation_change_nothing_on_identical_sequences(tiny_model, tiny_suites):
    one = tiny_suites["icl"][torch.tensor([0])]
    same = Batch(**{k: v.repeat(8, *[1] * (v.ndim - 1)) for k, v in one.tensors().items()}, layout=one.layout)
    for method in ("mean", "resample"):
        df = ablate_heads(tiny_model, same, "L0H0,L1H1", method)
        assert df["delta"].abs().max() < 1e-5


def test_ablation_table_has_one_row_per_suite_and_metric(tiny_model, tiny_suites):
    df = ablate_heads(tiny_model, tiny_suites, [(1, 0), (0, 0)], "resample", seed=1)
    assert list(df.columns) == [*COLUMNS, *ABLATION_EXTRA]
    assert len(df) == 2 * len(tiny_suites)
    assert df["layer"].isna().all() and df["run"].isna().all()  # a set of heads; no run given
    assert set(df["heads"]) == {"L1H0,L0H0"} and set(df["method"]) == {"resample"}
    assert set(df["metric"]) == {"accuracy", "loss"}
    torch.testing.assert_close(
        torch.tensor(df["delta"].to_numpy()), torch.tensor((df["value"] - df["clean"]).to_numpy())
    )
    each = ablate_each_head(tiny_model, tiny_suites["icl"], "zero")
    assert list(each["heads"].unique()) == ["L0H0", "L0H1", "L1H0", "L1H1"]
    assert set(each["suite"]) == {"batch"}
    assert [(int(r.layer), int(r.head)) for r in each.itertuples()][::2] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_ablating_the_trained_induction_head_removes_icl(icl_run):
    """The trained 2-layer, 1-head model: L1H0 is its induction head.

    Zero / mean ablation leave a model that still answers with a context label (layer 0
    alone can copy labels from the context) but no longer the matching one: accuracy falls
    to about 1/(N/B) = 1/4 of guessing among the context's labels. Resampling the head from
    another sequence copies that sequence's answer: accuracy falls to chance.
    """
    suites = {"icl": icl_run.suites["icl"], "iwl": icl_run.suites["iwl"]}
    chance = 1 / icl_run.run.config.task.L
    n_context_labels = icl_run.run.config.task.N // icl_run.run.config.task.B
    for method in ("zero", "mean", "resample"):
        df = ablate_heads(icl_run.model, suites, "L1H0", method).set_index(["suite", "metric"])
        assert df.loc[("icl", "accuracy"), "clean"] > 0.8
        assert df.loc[("icl", "accuracy"), "value"] < 1.5 / n_context_labels, method
        assert df.loc[("icl", "loss"), "delta"] > 1.0, method
    logits = ablated_logits(icl_run.model, suites["icl"], "L1H0", "mean")
    assert context_label_accuracy(logits, suites["icl"]) > 0.5  # still a context label
    df = ablate_heads(icl_run.model, suites, "L1H0", "resample").set_index(["suite", "metric"])
    assert df.loc[("icl", "accuracy"), "value"] < 2 * chance
    each = ablate_each_head(icl_run.model, suites, "mean").set_index(["suite", "metric", "heads"])
    # both heads of the circuit are needed: the previous-token head too
    assert each.loc[("icl", "accuracy", "L0H0"), "delta"] < -0.4
    assert each.loc[("icl", "accuracy", "L1H0"), "delta"] < -0.4


def test_ablation_over_checkpoints_adds_run_and_step(icl_run):
    run = icl_run.run
    df = ablation_over_checkpoints(run, "L1H0", "mean", steps=[0, 400], n_seqs=64)
    assert list(df.columns) == [*COLUMNS, *ABLATION_EXTRA]
    assert set(df["step"]) == {0, 400} and set(df["run"]) == {run.run_id}
    icl_acc = df[(df.suite == "icl") & (df.metric == "accuracy")].set_index("step")
    assert icl_acc.loc[400, "delta"] < icl_acc.loc[0, "delta"]
    with pytest.raises(ValueError, match=r"steps: \[7\] have no checkpoint"):
        ablation_over_checkpoints(run, "L1H0", steps=[7])


# ---------------------------------------------------------------------- token prompts (the seam)
def test_mean_ablation_on_padded_prompts_averages_real_tokens_only():
    prompts = toy_prompts()
    model = ToyLM(toy_patterns(prompts))
    _, cache = model.run_with_cache(prompts.inputs, **prompts.kwargs)
    z = cache["blocks.0.attn.hook_z"][:, :, 1]
    got = ablation_values(model, prompts, [(0, 1)], "mean")[(0, 1)]
    real = prompts.token_mask
    for t in range(prompts.n_positions):
        rows = [b for b in range(len(prompts)) if real[b, t]]
        want = z[rows, t].mean(0) if rows else torch.zeros(z.shape[-1])
        for b in range(len(prompts)):
            torch.testing.assert_close(got[b, t], want)
    assert not real[:, 0].all() and not real[:, -1].all()  # both edges have padding somewhere


def test_ablation_on_token_prompts_reads_label_logits_at_each_readout_row():
    prompts = toy_prompts()
    model = ToyLM(toy_patterns(prompts))

    def zero_head(z, hook):
        z = z.clone()
        z[:, :, 1] = 0.0
        return z

    with torch.no_grad():
        logits = model.run_with_hooks(
            prompts.inputs, **prompts.kwargs, fwd_hooks=[("blocks.1.attn.hook_z", zero_head)]
        )
    rows = torch.arange(len(prompts))
    want = logits[rows, prompts.readout_position][:, list(LABEL_TOKENS)]
    torch.testing.assert_close(ablated_logits(model, prompts, "L1H1", "zero"), want)
    df = ablate_heads(model, {"toy": prompts}, "L1H1", "zero").set_index("metric")
    acc = (want.argmax(-1) == prompts.targets).float().mean().item()
    assert df.loc["accuracy", "value"] == pytest.approx(acc)
    assert set(df["suite"]) == {"toy"}


def test_heads_above_picks_every_head_over_the_threshold_best_first():
    from mmicl_interp.analyses.ablation import heads_above

    scores = torch.tensor([[0.05, 0.30], [0.12, -0.2]])
    assert heads_above(scores, 0.1) == [(0, 1), (1, 0)]
    assert heads_above(scores, 0.5) == [(0, 1)]  # the best head always counts
    assert heads_above(scores, 0.5, at_least=0) == []
    assert heads_above(scores, -1.0) == [(0, 1), (1, 0), (0, 0), (1, 1)]
