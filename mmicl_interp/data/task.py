"""The unimodal Gaussian-mixture few-shot classification task (SCIENCE.md section 1).

Method (Chan et al. 2022; Reddy 2024; Huang et al. 2026):

- class means ``mu_k ~ N(0, I_D / D)`` for k = 1..K; label vectors ``l_j ~ N(0, I_D / D)``
  for j = 1..L; class k has label ``k mod L``. Both are drawn once and stored with the run.
- an item of class k: ``x = (mu_k + eps * eta / sqrt(D)) / sqrt(1 + eps^2)``, ``eta ~ N(0, I_D)``.
- bursty context (prob. p_B): N/B classes drawn i.i.d. from the Zipf law
  ``P(k) ~ k^-alpha``, each repeated B times, shuffled; the query's class is one of them.
  With ``no_repeats`` the N/B classes carry distinct labels.
- non-bursty context: N classes and the query class i.i.d. from P.
- novel-class context (prob. p_C): bursty over fresh class means, never seen in training,
  drawn uniformly from a set of K_c classes with labels ``k mod L``.

Sequences are generated vectorised in torch from a seeded ``torch.Generator``: no Python
loop per sequence, so data costs a small fraction of a training step. Every batch carries
the task's :class:`~mmicl_interp.data.layout.Layout` (``batch.layout``), where analyses read
which position holds what.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from jaxtyping import Bool, Float, Int

from mmicl_interp.checkpoints import read_safetensors, write_safetensors
from mmicl_interp.config import TaskConfig
from mmicl_interp.data.layout import Layout
from mmicl_interp.io import CorruptFileError

T = TypeVar("T")


@dataclass
class Batch:
    """A batch of sequences plus what an analysis needs to know about them."""

    inputs: Float[torch.Tensor, "batch pos d"]
    """The sequence of D-dim vectors (items, label vectors, query)."""
    targets: Int[torch.Tensor, " batch"]
    """The query's label (after a flip, the flipped label)."""
    context_labels: Int[torch.Tensor, "batch n"]
    """Label index shown at each exemplar's label position."""
    context_classes: Int[torch.Tensor, "batch n"]
    """Class of each exemplar (novel classes are numbered within their fresh set)."""
    query_classes: Int[torch.Tensor, " batch"]
    novel: Bool[torch.Tensor, " batch"]
    """True where the sequence is drawn from novel classes."""
    pos_shift: Int[torch.Tensor, " batch"]
    """Per-sequence offset of the one-hot position block (0 where unused)."""
    context_classes2: Int[torch.Tensor, "batch n"] | None = None
    """Multimodal only: the M2 class of each exemplar (``context_classes`` holds the M1 class)."""
    query_classes2: Int[torch.Tensor, " batch"] | None = None
    """Multimodal only: the query's M2 class."""
    layout: Layout | None = None
    """Where items, labels and the query sit (set by the task samplers); None for batches
    without exemplars (encoder data), or built by hand."""

    def __post_init__(self) -> None:
        # unset optional fields stay out of the instance __dict__ (reads fall back to the class
        # default None), so iterating over a batch's fields never meets a None
        for name in ("context_classes2", "query_classes2", "layout"):
            if self.__dict__.get(name, 0) is None:
                del self.__dict__[name]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor field that is set, by name (all fields but ``layout``)."""
        return {k: v for k, v in self.__dict__.items() if isinstance(v, torch.Tensor)}

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: slice | torch.Tensor) -> Batch:
        return Batch(**{k: v[index] for k, v in self.tensors().items()}, layout=self.layout)

    def to(self, device: str | torch.device, non_blocking: bool = False) -> Batch:
        """The batch with every tensor on ``device`` (itself when they all are there already)."""
        device = torch.device(device)
        tensors = self.tensors()
        if all(v.device == device for v in tensors.values()):
            return self
        moved = {k: v.to(device, non_blocking=non_blocking) for k, v in tensors.items()}
        return Batch(**moved, layout=self.layout)

    def matches(self) -> Bool[torch.Tensor, "batch n"]:
        """Exemplars whose label equals the query's target label (the set M of SCIENCE.md)."""
        return self.context_labels == self.targets[:, None]


def sequence_kinds(
    n: int, g: torch.Generator, p_B: float, p_C: float, B: int
) -> tuple[Bool[torch.Tensor, " n"], list[tuple[str, Int[torch.Tensor, " m"]]]]:
    """Which of n sequences are novel (prob. p_C), bursty (p_B) or i.i.d.; every sampler draws
    this first, in this RNG order. Returns the novel mask and the non-empty groups as
    ``(kind, indices)`` in the order novel, bursty, iid."""
    u = torch.rand(n, generator=g)
    novel = (u < p_C) if B > 0 else torch.zeros(n, dtype=torch.bool)
    bursty = ~novel & (torch.rand(n, generator=g) < p_B) if B > 0 else novel.clone()
    groups = []
    for mask, kind in ((novel, "novel"), (bursty & ~novel, "bursty"), (~bursty & ~novel, "iid")):
        idx = mask.nonzero().squeeze(1)
        if idx.numel():
            groups.append((kind, idx))
    return novel, groups


def zipf_probs(n_classes: int, alpha: float) -> Float[torch.Tensor, " k"]:
    """Zipf law ``P(k) ~ k^-alpha`` over k = 1..n_classes (alpha 0 is uniform)."""
    ranks = torch.arange(1, n_classes + 1, dtype=torch.float64)
    weights = ranks.pow(-alpha)
    return (weights / weights.sum()).float()


def draw_classes(
    count: int, probs: torch.Tensor, g: torch.Generator, uniform: bool
) -> Int[torch.Tensor, " count"]:
    """``count`` i.i.d. classes from ``probs`` (a fast path for the uniform law)."""
    if uniform:
        return torch.randint(probs.numel(), (count,), generator=g)
    return torch.multinomial(probs, count, replacement=True, generator=g)


def draw_context_classes(
    m: int,
    n_slots: int,
    probs: torch.Tensor,
    n_labels: int,
    no_repeats: bool,
    g: torch.Generator,
    uniform: bool,
) -> Int[torch.Tensor, "m slots"]:
    """The N/B classes of m bursty contexts from ``probs`` (class k has label k mod ``n_labels``);
    distinct labels when ``no_repeats``."""
    if not no_repeats:
        return draw_classes(m * n_slots, probs, g, uniform).view(m, n_slots)
    per_label = probs.view(-1, n_labels)  # row r, column j = class r*L + j (label j)
    labels = torch.multinomial(per_label.sum(0).expand(m, n_labels), n_slots, replacement=False, generator=g)
    within = per_label[:, labels.reshape(-1)].T  # [m*n_slots, K/L]
    rows = torch.multinomial(within, 1, replacement=True, generator=g).view(m, n_slots)
    return rows * n_labels + labels


def bursty_slots(m: int, N: int, B: int, g: torch.Generator) -> Int[torch.Tensor, "m n1"]:
    """Slot of each of the N context positions (each of N/B slots B times, shuffled) and of the
    query (one of the slots, last column)."""
    n_slots = N // B
    slots = torch.arange(n_slots).repeat_interleave(B).expand(m, N)
    slots = slots.gather(1, torch.rand(m, N, generator=g).argsort(dim=1))
    q_slot = torch.randint(n_slots, (m, 1), generator=g)
    return torch.cat([slots, q_slot], dim=1)


def gather_slots(
    slot_values: Float[torch.Tensor, "m slots d"], seq_slots: Int[torch.Tensor, "m pos"]
) -> Float[torch.Tensor, "m pos d"]:
    """Each position's row of ``slot_values`` (its slot's class mean)."""
    return slot_values.gather(1, seq_slots[..., None].expand(-1, -1, slot_values.shape[-1]))


def fresh_means(
    m: int, n_slots: int, d: int, seq_slots: Int[torch.Tensor, "m pos"], g: torch.Generator
) -> Float[torch.Tensor, "m pos d"]:
    """Novel classes: a fresh mean ``~ N(0, I_d / d)`` per slot, at each position of its slot."""
    return gather_slots(torch.randn(m, n_slots, d, generator=g) / math.sqrt(d), seq_slots)


class SyntheticTask:
    """What both synthetic tasks share: :meth:`sample` around each task's own draw, and the
    eval suites' generator and burst size.

    A subclass sets ``config`` and ``layout`` and implements ``_draw`` (labels, class fields
    and items of n sequences, given which are novel / bursty / i.i.d.), ``_pack`` (the model
    inputs) and ``_n_context_labels`` (the labels a flip cycles through).
    """

    config: Any
    layout: Layout

    def sample(
        self,
        n: int,
        generator: torch.Generator,
        *,
        p_B: float | None = None,
        p_C: float | None = None,
        B: int | None = None,
        flip: bool = False,
        max_shift: int = 0,
        control: str | None = None,
    ) -> Batch:
        """Draw n sequences; keyword arguments override the task's own statistics.

        ``flip`` replaces every context label by ``(label + 1) mod L`` (L2 in a multimodal
        task) and makes the flipped label the target (the icl_flip suite). ``max_shift`` draws
        a per-sequence offset in ``[0, max_shift]`` for the one-hot position block.
        ``control`` (multimodal tasks only) replaces one modality's items and query by fresh
        random vectors, drawn last, so a controlled batch equals the uncontrolled one from the
        same generator state elsewhere. The batch carries the task's layout.
        """
        self._check_control(control)
        cfg, g = self.config, generator
        p_B = cfg.p_B if p_B is None else p_B
        p_C = cfg.p_C if p_C is None else p_C
        B = cfg.B if B is None else B
        novel, groups = sequence_kinds(n, g, p_B, p_C, B)
        ctx_labels, targets, classes, items = self._draw(n, groups, B, g)
        if flip:
            n_labels = self._n_context_labels()
            ctx_labels = (ctx_labels + 1) % n_labels
            targets = (targets + 1) % n_labels
        inputs = self._pack(items, ctx_labels)
        if max_shift > 0:
            pos_shift = torch.randint(max_shift + 1, (n,), generator=g)
        else:
            pos_shift = torch.zeros(n, dtype=torch.long)
        if control is not None:
            self._apply_control(inputs, control, g)
        fields = dict(novel=novel, pos_shift=pos_shift, layout=self.layout)
        return Batch(inputs, targets, ctx_labels, **classes, **fields)

    def _check_control(self, control: str | None) -> None:
        if control is not None:
            raise ValueError(
                f"control applies to a multimodal task; this task has one modality, got {control!r}"
            )

    def _apply_control(self, inputs: torch.Tensor, control: str, g: torch.Generator) -> None:
        raise NotImplementedError

    def _n_context_labels(self) -> int:
        raise NotImplementedError

    def _draw(
        self, n: int, groups: list[tuple[str, torch.Tensor]], B: int, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
        """(context labels, targets, class fields of the Batch, items for ``_pack``)."""
        raise NotImplementedError

    def _pack(self, items: tuple[torch.Tensor, ...], ctx_labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _suite_start(self, eval_seed: int) -> tuple[torch.Generator, int]:
        """The eval suites' generator, and B of their bursty suites (for a run trained without
        bursts, the least divisor of N above 1)."""
        B = self.config.B if self.config.B > 0 else _smallest_burst(self.config.N)
        return torch.Generator().manual_seed(eval_seed), B


def read_task_file(path: str | Path, build: Callable[[dict, dict], T], kind: str | None = None) -> T:
    """``build(tensors, metadata)`` of a task file read with its checksum verified; a corrupt
    file (or one ``build`` cannot read) raises CorruptFileError naming it. ``kind``: the
    ``kind`` metadata the file must have (a ValueError otherwise)."""
    path = Path(path)
    tensors, meta, _ = read_safetensors(path)
    if kind is not None and meta.get("kind") != kind:
        found = meta.get("kind", "unimodal")
        raise ValueError(f"{path} is a {found} task file, not a {kind} one; use load_task")
    try:
        return build(tensors, meta)
    except (KeyError, ValueError, TypeError) as err:
        raise CorruptFileError(path, err) from None


class Task(SyntheticTask):
    """One run's task: its class means and label vectors, and a batch sampler."""

    def __init__(
        self,
        config: TaskConfig,
        class_means: Float[torch.Tensor, "k d"],
        label_vectors: Float[torch.Tensor, "l d"],
    ):
        if class_means.shape != (config.K, config.D):
            raise ValueError(f"class_means must be ({config.K}, {config.D}), got {tuple(class_means.shape)}")
        if label_vectors.shape != (config.L, config.D):
            raise ValueError(
                f"label_vectors must be ({config.L}, {config.D}), got {tuple(label_vectors.shape)}"
            )
        self.config = config
        self.class_means = class_means.float().contiguous()
        self.label_vectors = label_vectors.float().contiguous()
        self.class_probs = zipf_probs(config.K, config.alpha)
        self.layout = Layout.unimodal(config.N)

    @classmethod
    def create(cls, config: TaskConfig) -> Task:
        """Draw the class means and label vectors from ``config.seed``."""
        g = torch.Generator().manual_seed(config.seed)
        d = config.D
        means = torch.randn(config.K, d, generator=g) / math.sqrt(d)
        labels = torch.randn(config.L, d, generator=g) / math.sqrt(d)
        return cls(config, means, labels)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the task (means, label vectors, config) atomically as safetensors, with checksum."""
        tensors = {"class_means": self.class_means, "label_vectors": self.label_vectors}
        write_safetensors(path, tensors, {"config": json.dumps(asdict(self.config))})

    @classmethod
    def load(cls, path: str | Path) -> Task:
        """Read a task saved by :meth:`save`, verifying its checksum; a corrupt file raises
        CorruptFileError naming it."""

        def build(tensors: dict, meta: dict) -> Task:
            config = TaskConfig(**json.loads(meta["config"]))
            return cls(config, tensors["class_means"], tensors["label_vectors"])

        return read_task_file(path, build)

    # ------------------------------------------------------------------ sampling
    def _n_context_labels(self) -> int:
        return self.config.L

    def _draw(self, n, groups, B, g):
        cfg = self.config
        N, D, L = cfg.N, cfg.D, cfg.L
        # column N of every [n, N + 1, ...] tensor is the query
        classes = torch.empty(n, N + 1, dtype=torch.long)
        means = torch.empty(n, N + 1, D)
        for kind, idx in groups:
            m = idx.numel()
            if kind == "iid":
                c = draw_classes(m * (N + 1), self.class_probs, g, cfg.alpha == 0).view(m, N + 1)
                mu = self.class_means[c]
            else:
                n_slots = N // B
                if kind == "bursty":
                    probs, uniform = self.class_probs, cfg.alpha == 0
                else:
                    probs, uniform = _uniform(cfg.K_c), True
                slot_classes = draw_context_classes(m, n_slots, probs, L, cfg.no_repeats, g, uniform)
                seq_slots = bursty_slots(m, N, B, g)
                c = slot_classes.gather(1, seq_slots)
                if kind == "bursty":
                    mu = gather_slots(self.class_means[slot_classes], seq_slots)
                else:
                    mu = fresh_means(m, n_slots, D, seq_slots, g)
            classes[idx], means[idx] = c, mu

        noise = torch.randn(n, N + 1, D, generator=g) * (cfg.eps / math.sqrt(D))
        items = (means + noise) * (1.0 / math.sqrt(1.0 + cfg.eps**2))
        ctx_classes, q_classes = classes[:, :N].contiguous(), classes[:, N].contiguous()
        fields = {"context_classes": ctx_classes, "query_classes": q_classes}
        return ctx_classes % L, q_classes % L, fields, (items,)

    def _pack(self, items, ctx_labels):
        (items,) = items
        n, N = ctx_labels.shape
        inputs = torch.empty(n, 2 * N + 1, items.shape[-1])
        inputs[:, 0 : 2 * N : 2] = items[:, :N]
        inputs[:, 1 : 2 * N : 2] = self.label_vectors[ctx_labels]
        inputs[:, 2 * N] = items[:, N]
        return inputs

    def suites(self, eval_seed: int, size: int, max_shift: int = 0) -> dict[str, Batch]:
        """The four fixed eval suites (SCIENCE.md section 2), drawn from ``eval_seed``.

        - test: the training distribution;
        - icl: bursty, novel classes (p_B = p_C = 1): only the context can tell the label;
        - icl_flip: bursty, known classes, every label shifted by one (p_B = 1, p_C = 0);
        - iwl: non-bursty known classes (B = 0, p_B = p_C = 0).
        """
        g, B = self._suite_start(eval_seed)
        return {
            "test": self.sample(size, g, max_shift=max_shift),
            "icl": self.sample(size, g, p_B=1.0, p_C=1.0, B=B, max_shift=max_shift),
            "icl_flip": self.sample(size, g, p_B=1.0, p_C=0.0, B=B, flip=True, max_shift=max_shift),
            "iwl": self.sample(size, g, p_B=0.0, p_C=0.0, B=0, max_shift=max_shift),
        }

    def with_config(self, **changes) -> Task:
        """The same means and label vectors under changed sampling statistics."""
        config = replace(self.config, **changes)
        config.validate()
        return Task(config, self.class_means, self.label_vectors)


def _uniform(n: int) -> torch.Tensor:
    return torch.full((n,), 1.0 / n)


def _smallest_burst(n_exemplars: int) -> int:
    """B for the bursty eval suites of a run trained without bursts: the least divisor > 1."""
    for b in range(2, n_exemplars):
        if n_exemplars % b == 0:
            return b
    return 1
