"""A 2-layer induction circuit built by hand: every analysis must find what was put there.

The residual stream (norm none, mlp none, d_embed = 3D, one-hot positions) has four blocks:
F (the D input features, W_E = [I, 0, 0]), S (spare: the previous token's features),
O (spare: the read-out) and P (the one-hot position block).

- L0H0, a previous-token head: its query is the position one-hot e_t, its key the shifted
  e_{u+1}, so it attends from t to t-1; its OV copies F into S. Every label token then holds
  its own item's features in S.
- L1H1, an induction head: its QK matches the token's F (the query item) against S (the
  copied item) at every key, so the query attends to the labels whose item is of the query's
  class; its OV copies those labels' F (the label vector) into O.
- W_U reads O through the pseudo-inverse of the label vectors, so logits ~ one-hot of the
  copied label.
- L0H1 and L1H0 keep their small random init: distractors with no role.
"""

import math
from dataclasses import replace

import pytest
import torch

from mmicl_interp.analyses.ablation import ablate_each_head, ablate_heads
from mmicl_interp.analyses.attention import attention_measures, pattern_measures
from mmicl_interp.analyses.patching import patch_head_outputs, path_patch, prepare_patching
from mmicl_interp.analyses.weights import all_composition_scores
from mmicl_interp.config import ModelConfig, TaskConfig
from mmicl_interp.data.layout import Layout
from mmicl_interp.data.task import Task
from mmicl_interp.model.transformer import ICLTransformer
from mmicl_interp.prompts import ICLPrompts
from mmicl_interp.train.evaluate import accuracy_and_loss, suite_logits

D, L, N = 32, 16, 8
PREV, INDUCTION = (0, 0), (1, 1)


def build_induction_model(task: Task, n_max: int = N) -> ICLTransformer:
    """The hand-set previous-token + induction circuit for ``task`` (see the module docstring)."""
    mc = ModelConfig(
        positions="onehot",
        n_max=n_max,
        norm="none",
        mlp="none",
        n_layers=2,
        n_heads=2,
        d_embed=3 * D,
        d_head=D,
    )
    model = ICLTransformer.from_task(mc, task.config)
    P = model.pos_width
    F, S, Out, Pos = slice(0, D), slice(D, 2 * D), slice(2 * D, 3 * D), slice(3 * D, 3 * D + P)
    eye, sharp = torch.eye(D), math.sqrt(model.cfg.d_head)  # scores are divided by sqrt(d_head)
    prev, ind = model.blocks[0].attn, model.blocks[1].attn
    with torch.no_grad():
        model.W_E.zero_()
        model.W_E[:, F] = eye
        for attn, head in ((prev, PREV[1]), (ind, INDUCTION[1])):
            for w in (attn.W_Q, attn.W_K, attn.W_V, attn.W_O):
                w[head].zero_()
        prev.W_Q[0, Pos, :P] = 20 * sharp * torch.eye(P)  # query at t: e_t
        prev.W_K[0, Pos, :P] = torch.diag(torch.ones(P - 1), 1)  # key at u: e_{u+1}
        prev.W_V[0, F, :] = eye
        prev.W_O[0, :, S] = eye
        ind.W_Q[1, F, :] = 30 * sharp * eye  # query: the token's own item features
        ind.W_K[1, S, :] = eye  # key: the previous token's features
        ind.W_V[1, F, :] = eye
        ind.W_O[1, :, Out] = eye
        model.W_U.zero_()
        model.W_U[Out] = 10 * torch.linalg.pinv(task.label_vectors)
        model.b_U.zero_()
    return model.eval()


@pytest.fixture(scope="module")
def circuit():
    config = TaskConfig(K=256, L=L, D=D, N=N, B=2, eps=0.1, eval_size=200)
    task = Task.create(config)
    model = build_induction_model(task)
    suites = task.suites(config.eval_seed, config.eval_size, max_shift=model.max_shift_for(task.layout.n_ctx))
    return task, model, suites


def test_the_circuit_does_icl_and_only_icl(circuit):
    _, model, suites = circuit
    acc = {
        name: accuracy_and_loss(suite_logits(model, batch), batch.targets)[0]
        for name, batch in suites.items()
    }
    assert acc["icl"] > 0.9
    assert acc["icl_flip"] > 0.9  # it follows the context, even against the trained labels
    assert acc["iwl"] < 3 / L  # no weights-based knowledge of classes


def test_attention_measures_single_out_the_two_heads(circuit):
    task, model, suites = circuit
    m = attention_measures(model, suites["icl"], task.layout)
    prev = m["prev_token_label"]
    assert prev[PREV] > 0.95
    assert prev.flatten().topk(2).values[1] < 0.5  # every other head far below
    ih = m["ih"]
    assert ih[INDUCTION] > 0.3
    assert ih.flatten().topk(2).values[1] < 0.1  # L0H0 at the query looks at the last label only
    assert m["tila"][INDUCTION] > 0.3 and m["tiia"][INDUCTION] < 0.05


def test_ablating_the_induction_head_drops_icl_to_chance(circuit):
    _, model, suites = circuit
    chance = 1 / L
    for method in ("zero", "mean"):
        df = ablate_heads(model, {"icl": suites["icl"]}, [INDUCTION], method).set_index("metric")
        assert df.loc["accuracy", "clean"] > 0.9
        assert df.loc["accuracy", "value"] < 2 * chance, method
    each = ablate_each_head(model, suites["icl"], "mean").set_index(["metric", "heads"])["delta"]
    assert each[("accuracy", "L0H0")] < -0.5  # the previous-token head is needed too
    assert abs(each[("accuracy", "L0H1")]) < 0.05 and abs(each[("accuracy", "L1H0")]) < 0.05


def test_path_patching_puts_the_effect_on_the_key_path(circuit):
    task, model, suites = circuit
    setup = prepare_patching(model, suites["icl"], task, task.layout, "item")
    heads = patch_head_outputs(model, setup)
    assert heads[PREV] > 0.9 and heads[INDUCTION] > 0.9
    paths = path_patch(model, setup)
    sender, receiver = PREV[0] * 2 + PREV[1], INDUCTION[0] * 2 + INDUCTION[1]
    k, q, v = (paths[c][sender, receiver].item() for c in "kqv")
    assert k > 0.9
    assert abs(q) < 0.05 and abs(v) < 0.05
    # the distractor sender's paths carry nothing
    other = PREV[0] * 2 + 1
    assert max(abs(paths[c][other, receiver].item()) for c in "kqv") < 0.05


def test_weights_show_pure_k_composition(circuit):
    _, model, _ = circuit
    scores = all_composition_scores(model)
    k = scores["k_comp"][(*PREV, *INDUCTION)].item()
    # OV_prev maps F -> S; QK_ind^T maps S -> F: ||I_D|| / (||I_D|| ||I_D||) = 1 / sqrt(D)
    assert k == pytest.approx(1 / math.sqrt(D), rel=1e-3)
    assert scores["q_comp"][(*PREV, *INDUCTION)].item() < 1e-6
    assert scores["v_comp"][(*PREV, *INDUCTION)].item() < 1e-6


def test_the_circuit_is_found_on_padded_prompts_with_per_prompt_positions(circuit):
    """The same icl sequences, padded with zero vectors: prompt b by b % 4 on the left and the
    rest of 3 on the right (room for them: n_max N + 2), so every part, the query included,
    sits at a per-prompt position. The circuit is relative (e_t against e_{u+1}), so it still
    works, and the seam finds its two heads. Each group of equally padded prompts scored
    alone with a fixed (shifted) layout gives the same numbers as the mixed batch."""
    task, _, suites = circuit
    model = build_induction_model(task, n_max=N + 2)
    batch = suites["icl"]
    n_batch, n_ctx = batch.inputs.shape[:2]
    pad = torch.arange(n_batch) % 4
    inputs = torch.zeros(n_batch, n_ctx + 3, batch.inputs.shape[-1])
    mask = torch.zeros(n_batch, n_ctx + 3, dtype=torch.bool)
    for b in range(n_batch):
        inputs[b, pad[b] : pad[b] + n_ctx] = batch.inputs[b]
        mask[b, pad[b] : pad[b] + n_ctx] = True
    base = ICLPrompts.from_batch(replace(batch, pos_shift=torch.zeros_like(batch.pos_shift)), task.layout)
    zeros = torch.zeros(n_batch, dtype=torch.long)
    prompts = ICLPrompts(
        inputs=inputs,
        item_spans={"m1": base.item_spans["m1"] + pad[:, None, None]},
        label_spans=base.label_spans + pad[:, None, None],
        readout_position=base.readout_position + pad,
        targets=batch.targets,
        context_labels=batch.context_labels,
        token_mask=mask,
        model_kwargs={"pos_shift": zeros},
    )
    mixed = attention_measures(model, prompts)
    ih, prev = mixed["ih"], mixed["prev_token_label"]
    assert prev[PREV] > 0.95 and prev.flatten().topk(2).values[1] < 0.5
    assert ih[INDUCTION] > 0.3 and ih.flatten().topk(2).values[1] < 0.1
    # read at the unpadded query position instead, only the unpadded quarter keeps its score
    wrong = replace(prompts, readout_position=torch.full((n_batch,), n_ctx - 1))
    assert attention_measures(model, wrong)["ih"][INDUCTION] < 0.4 * ih[INDUCTION]
    # the mixed batch = the average of each padding group scored with its own fixed layout
    layout = task.layout
    want: dict[str, torch.Tensor] = {}
    for shift in range(4):
        group = pad == shift
        shifted = Layout(
            n_exemplars=N,
            n_ctx=n_ctx + 3,
            item_positions={"m1": tuple(p + shift for p in layout.item_positions["m1"])},
            label_positions=tuple(p + shift for p in layout.label_positions),
            query_positions={"m1": layout.readout_position + shift},
            readout_position=layout.readout_position + shift,
        )
        _, cache = model.run_with_cache(inputs[group], zeros[group])
        for layer in range(2):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
            for name, value in pattern_measures(pattern, batch.matches()[group], shifted).items():
                want.setdefault(name, torch.zeros(2, 2))[layer] += value * group.sum() / n_batch
    for name in ("ih", "tila", "tla", "tiia", "prev_token_label"):
        torch.testing.assert_close(mixed[name], want[name], rtol=0, atol=1e-6, msg=name)
