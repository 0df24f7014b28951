"""The prompt seam: ICLPrompts from synthetic batches, slicing, devices, token read-out; and a
toy token-level model with multi-token spans, padding and per-prompt positions, which the
analysis tests (attention, ablation, patching) share."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from mmicl_interp.config import MultimodalTaskConfig
from mmicl_interp.data.layout import Layout
from mmicl_interp.data.multimodal import MultimodalTask
from mmicl_interp.data.task import Batch
from mmicl_interp.prompts import ICLPrompts, TokenReadout, as_prompt_suites, as_prompts, one_token_spans

# ---------------------------------------------------------------------- a toy token model
VOCAB, LABEL_TOKENS = 16, (5, 6, 7)
"""Token ids 5, 6, 7 start the three candidate labels; every label is two tokens long."""


class _Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.hook_resid_pre = HookPoint()
        self.attn = _Attn()


class ToyLM(HookedRootModule):
    """A token model whose attention patterns are given, per prompt and layer.

    ``forward(tokens, attention_mask, prompt_ids)``: every layer mixes the residual stream
    with the pattern stored for each prompt (``hook_pattern``, [batch, head, q, k]), per head
    (``hook_z``, [batch, pos, head, d_head]), and adds it back; token logits come from a
    random unembedding. The patterns are chosen, so the measures are known exactly.
    """

    def __init__(self, patterns: list[torch.Tensor], d_head: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        n_heads = patterns[0].shape[1]
        self.cfg = SimpleNamespace(n_layers=len(patterns), n_heads=n_heads, d_head=d_head)
        self.patterns = nn.ParameterList([nn.Parameter(p, requires_grad=False) for p in patterns])
        self.embed = nn.Embedding(VOCAB, n_heads * d_head)
        self.unembed = nn.Linear(n_heads * d_head, VOCAB)
        self.blocks = nn.ModuleList([_Block() for _ in patterns])
        self.setup()

    def forward(self, tokens, attention_mask=None, prompt_ids=None):
        assert attention_mask is not None and prompt_ids is not None  # the prompts pass them
        x = self.embed(tokens)
        n_batch, n_pos = tokens.shape
        for layer, block in enumerate(self.blocks):
            x = block.hook_resid_pre(x)
            pattern = block.attn.hook_pattern(self.patterns[layer][prompt_ids])
            v = x.view(n_batch, n_pos, self.cfg.n_heads, self.cfg.d_head)
            z = block.attn.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))
            x = x + torch.tanh(z.reshape(n_batch, n_pos, -1))
        return self.unembed(x)


def toy_prompts(modalities: tuple[str, ...] = ("m1",), seed: int = 0) -> ICLPrompts:
    """Four prompts of 3 exemplars with 2-3-token items, 2-token labels and optional separator
    tokens: prompt 0 unpadded, 1 left-padded by 3, 2 right-padded by 2, 3 left-padded by 1
    and without exemplar 1 (empty spans). The read-out is the query's last token."""
    rng = random.Random(seed)
    pads, absent = [(0, 0), (3, 0), (0, 2), (1, 0)], {(3, 1)}
    n, n_batch = 3, len(pads)
    context_labels = torch.tensor([[0, 1, 0], [2, 2, 1], [1, 0, 2], [0, 2, 0]])
    targets = torch.tensor([0, 2, 1, 0])
    layouts = []
    for b, (left, _right) in enumerate(pads):
        pos, tokens = left, [0] * left
        items: dict[str, list] = {m: [] for m in modalities}
        labels = []
        for i in range(n):
            if (b, i) in absent:
                for m in modalities:
                    items[m].append((pos, pos))
                labels.append((pos, pos))
                continue
            for m in modalities:
                length = rng.choice([2, 3])
                items[m].append((pos, pos + length))
                tokens += [rng.randrange(8, VOCAB) for _ in range(length)]
                pos += length
            if rng.random() < 0.5:  # a separator between item and label
                tokens.append(1)
                pos += 1
            labels.append((pos, pos + 2))
            tokens += [LABEL_TOKENS[context_labels[b, i]], 4]
            pos += 2
        tokens += [rng.randrange(8, VOCAB) for _ in range(2)]  # the query item
        pos += 2
        layouts.append((items, labels, pos - 1, left, pos, tokens))
    n_pos = max(end for *_, end, _ in layouts) + max(r for _, r in pads)
    inputs = torch.zeros(n_batch, n_pos, dtype=torch.long)
    mask = torch.zeros(n_batch, n_pos, dtype=torch.bool)
    for b, (*_, left, end, tokens) in enumerate(layouts):
        inputs[b, : len(tokens)] = torch.tensor(tokens)
        mask[b, left:end] = True
    return ICLPrompts(
        inputs=inputs,
        item_spans={m: torch.tensor([lay[0][m] for lay in layouts]) for m in modalities},
        label_spans=torch.tensor([lay[1] for lay in layouts]),
        readout_position=torch.tensor([lay[2] for lay in layouts]),
        targets=targets,
        context_labels=context_labels,
        token_mask=mask,
        model_kwargs={"attention_mask": mask.long(), "prompt_ids": torch.arange(n_batch)},
        readout=TokenReadout(torch.tensor(LABEL_TOKENS)),
    )


def toy_patterns(
    prompts: ICLPrompts, n_layers: int = 2, n_heads: int = 2, seed: int = 0
) -> list[torch.Tensor]:
    """Random causal patterns over real keys (padding rows: over every earlier key)."""
    g = torch.Generator().manual_seed(seed)
    n_batch, n_pos = prompts.inputs.shape
    causal = torch.ones(n_pos, n_pos).tril().bool()
    real = prompts.token_mask
    allowed = causal & (real[:, None, :] | ~real[:, :, None])  # [batch, q, k]
    out = []
    for _ in range(n_layers):
        w = torch.rand(n_batch, n_heads, n_pos, n_pos, generator=g) * allowed[:, None]
        out.append(w / w.sum(-1, keepdim=True))
    return out


# ---------------------------------------------------------------------- from synthetic batches
def test_from_batch_puts_one_token_spans_where_the_unimodal_layout_says(tiny_task):
    batch = tiny_task.suites(1, 8, max_shift=3)["icl"]
    prompts = ICLPrompts.from_batch(batch)  # the batch carries its layout
    layout = tiny_task.layout
    assert batch.layout == layout
    assert prompts.modalities == ("m1",) and prompts.n_exemplars == layout.n_exemplars == 4
    assert prompts.item_spans["m1"][3].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert prompts.label_spans[5].tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert prompts.readout_position.tolist() == [8] * 8
    assert torch.equal(prompts.matches, batch.context_labels == batch.targets[:, None])
    assert prompts.kwargs == {"pos_shift": batch.pos_shift}
    assert prompts.readout is None and prompts.token_mask is None
    logits = torch.randn(8, 8)
    assert prompts.label_logits(logits) is logits


def test_from_batch_multimodal_triplets_and_layout_checks():
    config = MultimodalTaskConfig(K1=64, L1=8, D1=8, K2=16, L2=8, D2=6, N=4, B=2, eval_size=8)
    config.validate()
    task = MultimodalTask.create(config)
    batch = task.suites(1, 4)["icl"]
    prompts = ICLPrompts.from_batch(batch, task.layout)
    assert prompts.modalities == ("m1", "m2")
    assert prompts.item_spans["m1"][0, :, 0].tolist() == [0, 3, 6, 9]
    assert prompts.item_spans["m2"][0, :, 0].tolist() == [1, 4, 7, 10]
    assert prompts.label_spans[0, :, 0].tolist() == [2, 5, 8, 11]
    assert (prompts.readout_position == 13).all()
    assert batch.layout == task.layout and batch[1:3].layout == task.layout
    assert ICLPrompts.from_batch(batch).modalities == ("m1", "m2")  # the batch's own triplets
    with pytest.raises(ValueError, match="layout: 3 exemplars in 7 positions"):
        ICLPrompts.from_batch(batch, Layout.unimodal(3))


def _hand_built_batch(n_exemplars: int, n_positions: int, layout: Layout | None = None) -> Batch:
    n = 2
    return Batch(
        torch.zeros(n, n_positions, 4),
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, n_exemplars, dtype=torch.long),
        torch.zeros(n, n_exemplars, dtype=torch.long),
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, dtype=torch.bool),
        torch.zeros(n, dtype=torch.long),
        layout=layout,
    )


def test_a_batch_without_a_layout_is_refused_not_guessed_from_its_length():
    plain = _hand_built_batch(2, 5)  # 2N + 1 positions: once guessed unimodal
    with pytest.raises(ValueError, match=r"^layout: the batch of 2 exemplars carries no layout") as err:
        ICLPrompts.from_batch(plain)
    assert "\n" not in str(err.value)
    assert ICLPrompts.from_batch(plain, Layout.unimodal(2)).label_spans[0, :, 0].tolist() == [1, 3]


def test_a_batch_with_a_non_standard_layout_is_read_where_its_layout_says():
    # labels before their items, [l_1, x_1, l_2, x_2, x_q]: the length 2N + 1 fits the unimodal
    # layout, which must not be guessed
    label_first = Layout(
        n_exemplars=2,
        n_ctx=5,
        item_positions={"m1": (1, 3)},
        label_positions=(0, 2),
        query_positions={"m1": 4},
        readout_position=4,
    )
    batch = _hand_built_batch(2, 5, label_first)
    for prompts in (ICLPrompts.from_batch(batch), as_prompts(batch), ICLPrompts.from_batch(batch[:1])):
        assert prompts.item_spans["m1"][0, :, 0].tolist() == [1, 3]
        assert prompts.label_spans[0, :, 0].tolist() == [0, 2]
    with pytest.raises(ValueError, match="layout: 3 exemplars in 7 positions"):
        ICLPrompts.from_batch(batch, Layout.unimodal(3))  # an explicit layout is still checked


def test_a_batch_without_exemplars_needs_no_layout_and_has_no_spans():
    prompts = ICLPrompts.from_batch(_hand_built_batch(0, 6))
    assert prompts.n_exemplars == 0 and prompts.label_spans.shape == (2, 0, 2)
    assert prompts.readout_position.tolist() == [5, 5]


def test_from_layout_matches_one_token_spans_for_every_prompt():
    layout = Layout.unimodal(2)
    prompts = ICLPrompts.from_layout(
        layout, torch.zeros(3, 5, 2), torch.tensor([0, 1, 1]), torch.ones(3, 2).long()
    )
    assert torch.equal(prompts.label_spans, one_token_spans([1, 3], 3))
    assert prompts.matches.tolist() == [[False, False], [True, True], [True, True]]


# ---------------------------------------------------------------------- container behaviour
def test_slicing_and_indexing_keep_every_per_prompt_field_together():
    prompts = toy_prompts()
    part = prompts[1:3]
    assert len(part) == 2
    assert torch.equal(part.inputs, prompts.inputs[1:3])
    assert torch.equal(part.label_spans, prompts.label_spans[1:3])
    assert torch.equal(part.token_mask, prompts.token_mask[1:3])
    assert part.model_kwargs["prompt_ids"].tolist() == [1, 2]
    assert torch.equal(part.readout_position, prompts.readout_position[1:3])
    picked = prompts[torch.tensor([3, 0])]
    assert picked.targets.tolist() == [0, 0] and picked.model_kwargs["prompt_ids"].tolist() == [3, 0]
    assert picked.exemplar_mask.tolist() == [[True, False, True], [True, True, True]]
    assert len(prompts[:2]) == 2 and len(prompts[2]) == 1


def test_to_moves_every_tensor_and_keeps_values():
    prompts = toy_prompts()
    moved = prompts.to("cpu")
    assert moved.device == torch.device("cpu")
    for name in ("inputs", "label_spans", "readout_position", "targets", "token_mask"):
        assert torch.equal(getattr(moved, name), getattr(prompts, name))
    assert torch.equal(moved.model_kwargs["attention_mask"], prompts.model_kwargs["attention_mask"])
    meta = prompts.to("meta")  # a second device without a GPU: nothing may stay behind
    tensors = [
        meta.inputs,
        meta.label_spans,
        meta.readout_position,
        meta.targets,
        meta.context_labels,
        meta.matches,
        meta.token_mask,
        *meta.item_spans.values(),
        *meta.model_kwargs.values(),
        meta.readout.label_tokens,
    ]
    assert all(t.device.type == "meta" for t in tensors)


def test_shapes_are_checked_with_the_field_named():
    prompts = toy_prompts()
    with pytest.raises(ValueError, match=r"targets: expected shape \[4\]"):
        ICLPrompts(**{**_fields(prompts), "targets": torch.zeros(3, dtype=torch.long)})
    with pytest.raises(ValueError, match=r"item_spans\['m1'\]: expected shape \[4, 3, 2\]"):
        ICLPrompts(**{**_fields(prompts), "item_spans": {"m1": torch.zeros(4, 2, 2, dtype=torch.long)}})
    with pytest.raises(ValueError, match="model_kwargs.'flag'.: per-prompt tensors must be batch-first"):
        ICLPrompts(**{**_fields(prompts), "model_kwargs": {"flag": torch.tensor(1)}})
    ok = ICLPrompts(**{**_fields(prompts), "shared_kwargs": {"flag": torch.tensor(1)}})
    assert ok[:2].shared_kwargs["flag"].item() == 1


def _fields(prompts: ICLPrompts) -> dict:
    return {k: getattr(prompts, k) for k in prompts.__dataclass_fields__}


def test_as_prompt_suites_accepts_batches_prompts_and_dicts(tiny_task):
    suites = tiny_task.suites(1, 4)
    converted = as_prompt_suites(suites)
    assert list(converted) == list(suites) and all(isinstance(p, ICLPrompts) for p in converted.values())
    assert list(as_prompt_suites(suites["icl"])) == ["batch"]
    prompts = toy_prompts()
    assert as_prompt_suites(prompts)["batch"] is prompts
    with pytest.raises(ValueError, match="suites: expected"):
        as_prompt_suites({})


# ---------------------------------------------------------------------- token read-out
def test_token_readout_takes_each_prompts_readout_row_at_the_labels_first_tokens():
    prompts = toy_prompts()
    logits = torch.randn(4, prompts.n_positions, VOCAB)
    got = prompts.label_logits(logits)
    for b in range(4):
        q = prompts.readout_position[b].item()
        assert got[b].tolist() == [logits[b, q, t].item() for t in LABEL_TOKENS]
    assert torch.equal(prompts[1:3].label_logits(logits[1:3]), got[1:3])
    # per-prompt candidates [batch, n_labels] are sliced with the prompts
    per_prompt = torch.tensor([[5, 6, 7], [7, 6, 5], [9, 10, 11], [5, 5, 6]])
    custom = ICLPrompts(**{**_fields(prompts), "readout": TokenReadout(per_prompt)})
    got = custom.label_logits(logits)
    assert got[2].tolist() == [logits[2, custom.readout_position[2], t].item() for t in (9, 10, 11)]
    assert torch.equal(custom[2:].label_logits(logits[2:]), got[2:])
    assert torch.equal(prompts.label_logits(SimpleNamespace(logits=logits)), prompts.label_logits(logits))


def test_run_passes_the_model_keywords_and_caches_after_the_hooks():
    prompts = toy_prompts()
    model = ToyLM(toy_patterns(prompts))

    def zero(z, hook):
        return torch.zeros_like(z)

    out, cache = prompts.run(model, [("blocks.0.attn.hook_z", zero)], cache=["blocks.0.attn.hook_z"])
    assert out.shape == (4, prompts.n_positions, VOCAB)
    assert set(cache) == {"blocks.0.attn.hook_z"} and (cache["blocks.0.attn.hook_z"] == 0).all()
