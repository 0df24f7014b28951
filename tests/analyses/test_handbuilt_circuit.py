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

import pytest
import torch

from mmicl_interp.analyses.ablation import ablate_each_head, ablate_heads
from mmicl_interp.analyses.attention import attention_measures
from mmicl_interp.analyses.patching import patch_head_outputs, path_patch, prepare_patching
from mmicl_interp.analyses.weights import all_composition_scores
from mmicl_interp.config import ModelConfig, TaskConfig
from mmicl_interp.data.task import Task
from mmicl_interp.model.transformer import ICLTransformer
from mmicl_interp.train.evaluate import accuracy_and_loss, suite_logits

D, L, N = 32, 16, 8
PREV, INDUCTION = (0, 0), (1, 1)


def build_induction_model(task: Task) -> ICLTransformer:
    """The hand-set previous-token + induction circuit for ``task`` (see the module docstring)."""
    mc = ModelConfig(
        positions="onehot", n_max=N, norm="none", mlp="none", n_layers=2, n_heads=2, d_embed=3 * D, d_head=D
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
        assert df.loc["accuracy", "ablated"] < 2 * chance, method
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
