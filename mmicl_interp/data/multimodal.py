"""The two-modality few-shot task (SCIENCE.md section 4).

Method (Huang et al. 2026, section 4 of SCIENCE.md):

- M1 ("primary"): K1 class means ``mu1_k ~ N(0, I_D1 / D1)`` and L1 label vectors
  ``l_j ~ N(0, I_D1 / D1)``; in a pipeline both are the *stored* tensors of the stage-1 run.
- M2 ("secondary"): K2 class means ``mu2_k ~ N(0, I_D2 / D2)``. M2 class k2 has label
  ``k2 mod L2`` (L2 <= L1: the M2 labels are the first L2 M1 label vectors) and is paired,
  once per task, with an M1 class of the same label, ``m2_partner[k2] mod L1 == k2 mod L2``.
- An item of either modality: ``x = (mu + eps * eta / sqrt(D)) / sqrt(1 + eps^2)``,
  ``eta ~ N(0, I_D)``, with that modality's own eps and D.
- Sequences are drawn over M2 classes exactly as the unimodal task draws classes: bursty
  (prob. p_B; N/B classes from the Zipf law ``P(k2) ~ k2^-alpha2``, each repeated B times,
  shuffled, the query among them), non-bursty (N + 1 classes i.i.d.), or novel (prob. p_C;
  bursty over N/B distinct classes of a fresh set of K_c, labels ``k mod L2``, with fresh M2
  means *and* fresh M1 partner means). Each exemplar's M1 item comes from the M1 partner
  of its M2 class; with ``m1_pool = "all"`` from a fresh M1 class of the same label per
  context slot (per item when non-bursty), uniform over all K1 classes. alpha1 describes
  the M1 (stage-1) data only: the sampler never draws M1 classes on their own.
- Packed inputs ``[n, 3N+2, D1 + D2]``: ``[m1_1, m2_1, y_1, ..., m1_N, m2_N, y_N, m1_q, m2_q]``
  (:meth:`Layout.multimodal`); M1 items and labels fill the first D1 columns, M2 items the
  last D2, the rest are zeros. The target is the query's label, read out at the M2 query.

Caution: the M1 query is the partner of the M2 query's class, so M1 alone can answer both
known sequences (in weights, since stage 1 learned M1) and novel ones (in context, by
matching M1 items). High multimodal ICL accuracy therefore does not show that M2 is used.
The control suites ``icl_m2_only`` / ``icl_m1_only`` replace one modality's items and query
by fresh random vectors, so only the other modality can solve the task; they are drawn from
the same generator state as ``icl`` and differ from it only in the replaced vectors.

Joint-label variant (``config.joint_labels``; SCIENCE.md section 4, last point): label =
``group(m1) * G2 + group(m2)``, so both modalities are needed.

- M1 class k1 has group ``k1 mod G1``, M2 class k2 group ``k2 mod G2``; the label space is
  the ``L2 = G1 * G2`` joint labels (the first L2 M1 label vectors).
- Each exemplar's M1 and M2 classes are drawn independently (M1 from the Zipf law
  ``P(k1) ~ k1^-alpha1``, M2 from ``P(k2) ~ k2^-alpha2``); the pairing ``m2_partner`` is
  still drawn and stored (same file format) but not used.
- Bursty: N/B (M1 class, M2 class) pairs, each repeated B times, shuffled; the query is one
  of the pairs, so both of its items match that exemplar. With ``no_repeats`` the N/B pairs
  carry distinct joint labels (groups drawn without replacement from the product of the two
  group marginals, then a class within each group). Non-bursty: N + 1 i.i.d. pairs.
- Novel: bursty over fresh means in both modalities; class numbers are drawn from
  ``[0, K_c)`` per modality, distinct within a sequence (so one number is one mean), groups
  ``k mod G1`` / ``k mod G2``.
- Both modalities are needed to predict from the weights (test, iwl: the label is built
  from both groups), but not in context: the query is one of the repeated pairs, so
  matching either modality's item finds the exemplar and its full joint label; the control
  suites stay solvable by induction. Making both modalities necessary in context would need
  distractor pairs (each query item also seen with another partner group): not built yet.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from safetensors import SafetensorError, safe_open

from mmicl_interp.checkpoints import write_safetensors
from mmicl_interp.config import MultimodalTaskConfig, TaskConfig
from mmicl_interp.data.layout import Layout
from mmicl_interp.data.task import (
    Batch,
    SyntheticTask,
    Task,
    _uniform,
    bursty_slots,
    draw_classes,
    draw_context_classes,
    fresh_means,
    read_task_file,
    zipf_probs,
)
from mmicl_interp.io import CorruptFileError

CONTROLS: tuple[str | None, ...] = (None, "m1_only", "m2_only")
"""Allowed ``control`` values of :meth:`MultimodalTask.sample`: ``m2_only`` replaces every M1
vector (items and query) by fresh noise, ``m1_only`` every M2 vector."""

KIND = "multimodal"


class MultimodalTask(SyntheticTask):
    """One run's multimodal task: both modalities' means, the label vectors, the M2 -> M1
    pairing, and a batch sampler with the interface of :class:`Task`."""

    def __init__(
        self,
        config: MultimodalTaskConfig,
        m1_means: Float[torch.Tensor, "k1 d1"],
        m2_means: Float[torch.Tensor, "k2 d2"],
        label_vectors: Float[torch.Tensor, "l1 d1"],
        m2_partner: Int[torch.Tensor, " k2"],
    ):
        c = config
        for name, tensor, shape in (
            ("m1_means", m1_means, (c.K1, c.D1)),
            ("m2_means", m2_means, (c.K2, c.D2)),
            ("label_vectors", label_vectors, (c.L1, c.D1)),
            ("m2_partner", m2_partner, (c.K2,)),
        ):
            if tuple(tensor.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
        partner = m2_partner.long()
        if ((partner < 0) | (partner >= c.K1)).any():
            raise ValueError(f"m2_partner must hold M1 classes in [0, K1={c.K1})")
        if not torch.equal(partner % c.L1, torch.arange(c.K2) % c.L2):
            raise ValueError("m2_partner must pair each M2 class k2 with an M1 class of label k2 mod L2")
        self.config = config
        self.m1_means = m1_means.float().contiguous()
        self.m2_means = m2_means.float().contiguous()
        self.label_vectors = label_vectors.float().contiguous()
        self.m2_partner = partner.contiguous()
        self.m2_probs = zipf_probs(c.K2, c.alpha2)
        self.m1_probs = zipf_probs(c.K1, c.alpha1) if c.joint_labels else None
        self.layout = Layout.multimodal(c.N)

    @property
    def class_means(self) -> Float[torch.Tensor, "k1 d1"]:
        """Alias of :attr:`m1_means` (the name the unimodal task uses)."""
        return self.m1_means

    @classmethod
    def create(
        cls,
        config: MultimodalTaskConfig,
        *,
        m1_means: Float[torch.Tensor, "k1 d1"] | None = None,
        label_vectors: Float[torch.Tensor, "l1 d1"] | None = None,
        m2_means: Float[torch.Tensor, "k2 d2"] | None = None,
    ) -> MultimodalTask:
        """Draw the task from ``config.seed``; given tensors (stage-1 M1 means and label
        vectors, a pretrained encoder's M2 means) are used verbatim.

        The M2 means and the pairing are drawn first, so they do not depend on whether the
        M1 means and label vectors are drawn here or passed in.
        """
        c = config
        for name, tensor, shape, origin in (
            ("m1_means", m1_means, (c.K1, c.D1), "(K1, D1)"),
            ("label_vectors", label_vectors, (c.L1, c.D1), "(L1, D1)"),
            ("m2_means", m2_means, (c.K2, c.D2), "(K2, D2)"),
        ):
            if tensor is not None and tuple(tensor.shape) != shape:
                raise ValueError(
                    f"{name} must have shape {origin} = {shape} of the task config, got {tuple(tensor.shape)}"
                )
        g = torch.Generator().manual_seed(c.seed)
        drawn_m2 = torch.randn(c.K2, c.D2, generator=g) / math.sqrt(c.D2)
        m2_means = drawn_m2 if m2_means is None else m2_means
        m2_partner = _draw_partners(c, g)
        if m1_means is None:
            m1_means = torch.randn(c.K1, c.D1, generator=g) / math.sqrt(c.D1)
        if label_vectors is None:
            label_vectors = torch.randn(c.L1, c.D1, generator=g) / math.sqrt(c.D1)
        return cls(c, m1_means, m2_means, label_vectors, m2_partner)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the task (means, label vectors, pairing, config) atomically as safetensors, with
        checksum."""
        tensors = {
            "m1_means": self.m1_means,
            "m2_means": self.m2_means,
            "label_vectors": self.label_vectors,
            "m2_partner": self.m2_partner,
        }
        meta = {"kind": KIND, "config": json.dumps(asdict(self.config))}
        write_safetensors(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path) -> MultimodalTask:
        """Read a task saved by :meth:`save`, verifying its checksum; a corrupt file raises
        CorruptFileError naming it."""

        def build(tensors: dict, meta: dict) -> MultimodalTask:
            config = MultimodalTaskConfig(**json.loads(meta["config"]))
            names = ("m1_means", "m2_means", "label_vectors", "m2_partner")
            return cls(config, *(tensors[name] for name in names))

        return read_task_file(path, build, KIND)

    # ------------------------------------------------------------------ sampling
    def _check_control(self, control: str | None) -> None:
        if control not in CONTROLS:
            raise ValueError(f"control must be one of {', '.join(map(repr, CONTROLS))}; got {control!r}")

    def _n_context_labels(self) -> int:
        return self.config.L2

    def _draw(self, n, groups, B, g):
        cfg = self.config
        N = cfg.N
        if cfg.joint_labels:
            classes1, classes2, mu1, mu2 = self._sample_joint(n, groups, B, g)
        else:
            classes1, classes2, mu1, mu2 = self._sample_paired(n, groups, B, g)
        items1 = noisy_items(mu1, cfg.eps1, g)
        items2 = noisy_items(mu2, cfg.eps2, g)
        if cfg.joint_labels:
            labels = self.joint_label(classes1, classes2)
            ctx_labels, targets = labels[:, :N], labels[:, N]
        else:
            ctx_labels = classes2[:, :N] % cfg.L2
            targets = classes2[:, N] % cfg.L2
        fields = {
            "context_classes": classes1[:, :N].contiguous(),
            "query_classes": classes1[:, N].contiguous(),
            "context_classes2": classes2[:, :N].contiguous(),
            "query_classes2": classes2[:, N].contiguous(),
        }
        return ctx_labels, targets, fields, (items1, items2)

    def _pack(self, items, ctx_labels):
        """``[n, 3N+2, D1 + D2]``: M1 items and labels in the first D1 columns, M2 items after."""
        items1, items2 = items
        n, N = ctx_labels.shape
        D1, D2 = self.config.D1, self.config.D2
        lay = self.layout
        inputs = torch.zeros(n, lay.n_ctx, D1 + D2)
        inputs[:, lay.items("m1"), :D1] = items1[:, :N]
        inputs[:, lay.items("m2"), D1:] = items2[:, :N]
        inputs[:, lay.labels(), :D1] = self.label_vectors[ctx_labels]
        inputs[:, lay.query_positions["m1"], :D1] = items1[:, N]
        inputs[:, lay.query_positions["m2"], D1:] = items2[:, N]
        return inputs

    def _apply_control(self, inputs: torch.Tensor, control: str, g: torch.Generator) -> None:
        """Replace one modality's vectors (items and query) by fresh noise, in place: in law
        N(0, I / D), what a fresh mean plus noise is after the rescaling."""
        n, N, D1, D2 = inputs.shape[0], self.config.N, self.config.D1, self.config.D2
        modality = "m1" if control == "m2_only" else "m2"
        cols = slice(0, D1) if modality == "m1" else slice(D1, D1 + D2)
        d = D1 if modality == "m1" else D2
        positions = torch.tensor(self.layout.positions_of(modality))
        inputs[:, positions, cols] = torch.randn(n, N + 1, d, generator=g) / math.sqrt(d)

    def joint_label(
        self, classes1: Int[torch.Tensor, "*s"], classes2: Int[torch.Tensor, "*s"]
    ) -> Int[torch.Tensor, "*s"]:
        """Joint-label variant: ``(classes1 mod G1) * G2 + classes2 mod G2`` (novel classes too)."""
        G1, G2 = self.config.G1, self.config.G2
        return (classes1 % G1) * G2 + classes2 % G2

    def _sample_paired(
        self, n: int, groups: list[tuple[str, torch.Tensor]], B: int, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Classes and means ``[n, N + 1, ...]`` of the paired task: M1 = partner of the M2 class
        (``m1_pool = all``: a fresh M1 class of its label)."""
        N = self.config.N
        fresh_m1 = self.config.m1_pool == "all"
        classes1, classes2, mu1, mu2 = self._to_fill(n)
        for kind, idx in groups:
            m = idx.numel()
            c1 = None  # m1_pool = all: a fresh M1 class per item (iid) or per slot (bursty)
            if kind == "iid":
                c2 = self._draw_classes(m * (N + 1), g).view(m, N + 1)
                if fresh_m1:
                    c1 = self._fresh_m1_classes(c2, g)
            else:
                n_slots = N // B
                if kind == "bursty":
                    slot_classes = self._draw_context_classes(m, n_slots, g)
                else:
                    slot_classes = self._draw_novel_classes(m, n_slots, g)
                seq_slots = bursty_slots(m, N, B, g)
                c2 = slot_classes.gather(1, seq_slots)
                if fresh_m1 and kind == "bursty":
                    c1 = self._fresh_m1_classes(slot_classes, g).gather(1, seq_slots)
            if kind == "novel":
                # fresh classes numbered within their set; the M1 partner shares the number
                classes1[idx], classes2[idx] = c2, c2
                mu1[idx], mu2[idx] = self._fresh_means(m, n_slots, seq_slots, g)
            else:
                c1 = self.m2_partner[c2] if c1 is None else c1
                classes1[idx], classes2[idx] = c1, c2
                mu1[idx], mu2[idx] = self.m1_means[c1], self.m2_means[c2]
        return classes1, classes2, mu1, mu2

    def _to_fill(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Empty M1 and M2 classes and means ``[n, N + 1, ...]`` (column N is the query)."""
        N, D1, D2 = self.config.N, self.config.D1, self.config.D2
        classes = (torch.empty(n, N + 1, dtype=torch.long), torch.empty(n, N + 1, dtype=torch.long))
        return (*classes, torch.empty(n, N + 1, D1), torch.empty(n, N + 1, D2))

    def _fresh_means(
        self, m: int, n_slots: int, seq_slots: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Novel contexts: fresh (M1, M2) means per slot, at each position (M2 drawn first)."""
        mu2 = fresh_means(m, n_slots, self.config.D2, seq_slots, g)
        return fresh_means(m, n_slots, self.config.D1, seq_slots, g), mu2

    def _fresh_m1_classes(
        self, classes2: Int[torch.Tensor, "*s"], g: torch.Generator
    ) -> Int[torch.Tensor, "*s"]:
        """``m1_pool = all``: per M2 class, an M1 class of the same label (k2 mod L2), uniform
        over the K1/L1 M1 classes of that label."""
        L1 = self.config.L1
        rows = torch.randint(self.config.K1 // L1, classes2.shape, generator=g)
        return rows * L1 + classes2 % self.config.L2

    def _sample_joint(
        self, n: int, groups: list[tuple[str, torch.Tensor]], B: int, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Classes and means ``[n, N + 1, ...]`` of the joint-label task: independent M1, M2 classes."""
        N = self.config.N
        classes1, classes2, mu1, mu2 = self._to_fill(n)
        for kind, idx in groups:
            m = idx.numel()
            if kind == "iid":
                c1 = self._draw_classes1(m * (N + 1), g).view(m, N + 1)
                c2 = self._draw_classes(m * (N + 1), g).view(m, N + 1)
            else:
                n_slots = N // B
                if kind == "bursty":
                    slot1, slot2 = self._draw_joint_context_pairs(m, n_slots, g)
                else:
                    slot1, slot2 = self._draw_joint_novel_pairs(m, n_slots, g)
                seq_slots = bursty_slots(m, N, B, g)
                c1, c2 = slot1.gather(1, seq_slots), slot2.gather(1, seq_slots)
            classes1[idx], classes2[idx] = c1, c2
            if kind == "novel":
                mu1[idx], mu2[idx] = self._fresh_means(m, n_slots, seq_slots, g)
            else:
                mu1[idx], mu2[idx] = self.m1_means[c1], self.m2_means[c2]
        return classes1, classes2, mu1, mu2

    def _draw_classes1(self, count: int, g: torch.Generator) -> Int[torch.Tensor, " count"]:
        """Joint labels only: ``count`` i.i.d. M1 classes from the Zipf law with alpha1."""
        assert self.m1_probs is not None
        return draw_classes(count, self.m1_probs, g, self.config.alpha1 == 0)

    def _draw_joint_context_pairs(
        self, m: int, n_slots: int, g: torch.Generator
    ) -> tuple[Int[torch.Tensor, "m slots"], Int[torch.Tensor, "m slots"]]:
        """The N/B (M1, M2) class pairs of m bursty joint-label contexts; with ``no_repeats``
        their joint labels are distinct."""
        c = self.config
        if not c.no_repeats:
            slot1 = self._draw_classes1(m * n_slots, g).view(m, n_slots)
            slot2 = self._draw_classes(m * n_slots, g).view(m, n_slots)
            return slot1, slot2
        assert self.m1_probs is not None
        per_group1 = self.m1_probs.view(-1, c.G1)  # row r, column j = class r*G1 + j (group j)
        per_group2 = self.m2_probs.view(-1, c.G2)
        joint = (per_group1.sum(0)[:, None] * per_group2.sum(0)[None, :]).reshape(-1)  # label g1*G2 + g2
        labels = torch.multinomial(joint.expand(m, c.L2), n_slots, replacement=False, generator=g)
        groups1, groups2 = labels // c.G2, labels % c.G2
        out = []
        for groups, per_group, G, alpha in (
            (groups1, per_group1, c.G1, c.alpha1),
            (groups2, per_group2, c.G2, c.alpha2),
        ):
            if alpha == 0:
                rows = torch.randint(per_group.shape[0], (m, n_slots), generator=g)
            else:  # inverse CDF within the group (a multinomial over K/G columns per slot is slow)
                cdf = per_group.double().cumsum(0)
                cdf = (cdf / cdf[-1]).T.contiguous()  # [G, K/G]
                u = torch.rand(m * n_slots, 1, generator=g, dtype=torch.float64)
                rows = torch.searchsorted(cdf[groups.reshape(-1)], u, right=True).clamp(max=cdf.shape[1] - 1)
                rows = rows.view(m, n_slots)
            out.append(rows * G + groups)
        return out[0], out[1]

    def _draw_joint_novel_pairs(
        self, m: int, n_slots: int, g: torch.Generator
    ) -> tuple[Int[torch.Tensor, "m slots"], Int[torch.Tensor, "m slots"]]:
        """N/B pairs of fresh classes, each modality's numbers distinct within a sequence (one
        number is one fresh mean); with ``no_repeats`` the joint labels are distinct too."""
        c = self.config
        K_c = c.K_c
        if n_slots > K_c:
            raise ValueError(f"novel contexts need N/B={n_slots} <= K_c={K_c} distinct fresh classes")
        if not c.no_repeats:
            uniform = _uniform(K_c).expand(m, K_c)
            slot1 = torch.multinomial(uniform, n_slots, replacement=False, generator=g)
            slot2 = torch.multinomial(uniform, n_slots, replacement=False, generator=g)
            return slot1, slot2
        labels = torch.multinomial(_uniform(c.L2).expand(m, c.L2), n_slots, replacement=False, generator=g)
        # slots sharing an M1 group have distinct M2 groups, so at most G2 <= K_c/G1 of them
        slot1 = _distinct_in_groups(labels // c.G2, c.G1, K_c, g)
        slot2 = _distinct_in_groups(labels % c.G2, c.G2, K_c, g)
        return slot1, slot2

    def _draw_classes(self, count: int, g: torch.Generator) -> Int[torch.Tensor, " count"]:
        """``count`` i.i.d. M2 classes from the Zipf law with alpha2."""
        return draw_classes(count, self.m2_probs, g, self.config.alpha2 == 0)

    def _draw_context_classes(self, m: int, n_slots: int, g: torch.Generator) -> Int[torch.Tensor, "m slots"]:
        """The N/B M2 classes of m bursty contexts; distinct labels when ``no_repeats``."""
        c = self.config
        return draw_context_classes(m, n_slots, self.m2_probs, c.L2, c.no_repeats, g, c.alpha2 == 0)

    def _draw_novel_classes(self, m: int, n_slots: int, g: torch.Generator) -> Int[torch.Tensor, "m slots"]:
        """N/B distinct classes of a fresh set of K_c (so one class number is one mean)."""
        K_c, L2 = self.config.K_c, self.config.L2
        if n_slots > K_c:
            raise ValueError(f"novel contexts need N/B={n_slots} <= K_c={K_c} distinct fresh classes")
        if not self.config.no_repeats:
            return torch.multinomial(_uniform(K_c).expand(m, K_c), n_slots, replacement=False, generator=g)
        labels = torch.multinomial(_uniform(L2).expand(m, L2), n_slots, replacement=False, generator=g)
        rows = torch.randint(K_c // L2, (m, n_slots), generator=g)
        return rows * L2 + labels

    def suites(self, eval_seed: int, size: int, max_shift: int = 0) -> dict[str, Batch]:
        """The fixed eval suites, drawn from ``eval_seed`` with one generator.

        - test: the training distribution;
        - icl: bursty, novel classes in both modalities (p_B = p_C = 1);
        - icl_flip: bursty, known classes, every label shifted by one mod L2;
        - iwl: non-bursty known classes (B = 0, p_B = p_C = 0);
        - icl_m2_only / icl_m1_only: the icl sequences with M1 (resp. M2) vectors replaced
          by noise, so only the other modality can solve them.
        """
        g, B = self._suite_start(eval_seed)
        kw: dict[str, Any] = {"max_shift": max_shift}
        icl_kw: dict[str, Any] = {"p_B": 1.0, "p_C": 1.0, "B": B, **kw}
        out = {"test": self.sample(size, g, **kw)}
        icl_state = g.get_state()
        out["icl_m2_only"] = self.sample(size, g, control="m2_only", **icl_kw)
        g.set_state(icl_state)
        out["icl_m1_only"] = self.sample(size, g, control="m1_only", **icl_kw)
        g.set_state(icl_state)
        out["icl"] = self.sample(size, g, **icl_kw)
        out["icl_flip"] = self.sample(size, g, p_B=1.0, p_C=0.0, B=B, flip=True, **kw)
        out["iwl"] = self.sample(size, g, p_B=0.0, p_C=0.0, B=0, **kw)
        order = ("test", "icl", "icl_flip", "iwl", "icl_m1_only", "icl_m2_only")
        return {name: out[name] for name in order}

    def with_config(self, **changes) -> MultimodalTask:
        """The same means, label vectors and pairing under changed sampling statistics."""
        config = replace(self.config, **changes)
        config.validate()
        return MultimodalTask(config, self.m1_means, self.m2_means, self.label_vectors, self.m2_partner)


def _draw_partners(c: MultimodalTaskConfig, g: torch.Generator) -> Int[torch.Tensor, " k2"]:
    """An M1 partner of the same label for each M2 class; distinct while K2/L2 <= K1/L1."""
    per_label1 = c.K1 // c.L1
    k2 = torch.arange(c.K2)
    label, rank = k2 % c.L2, k2 // c.L2
    order = torch.rand(c.L2, per_label1, generator=g).argsort(dim=1)  # a shuffle of rows per label
    return order[label, rank % per_label1] * c.L1 + label


def _distinct_in_groups(
    groups: Int[torch.Tensor, "m slots"], n_groups: int, K_c: int, g: torch.Generator
) -> Int[torch.Tensor, "m slots"]:
    """A fresh class ``row * n_groups + group`` per slot, distinct within each row of ``groups``.

    Slots of the same group take successive entries of a random permutation of that group's
    ``K_c / n_groups`` rows (so at most that many slots may share a group).
    """
    m = groups.shape[0]
    perms = torch.rand(m, n_groups, K_c // n_groups, generator=g).argsort(dim=-1)
    onehot = torch.nn.functional.one_hot(groups, n_groups)
    rank = ((onehot.cumsum(1) - onehot) * onehot).sum(-1)  # earlier slots of the same group
    rows = perms[torch.arange(m)[:, None], groups, rank]
    return rows * n_groups + groups


def noisy_items(
    mu: Float[torch.Tensor, "*shape d"], eps: float, g: torch.Generator
) -> Float[torch.Tensor, "*shape d"]:
    """``(mu + eps * eta / sqrt(D)) / sqrt(1 + eps^2)`` with ``eta ~ N(0, I_D)``."""
    d = mu.shape[-1]
    noise = torch.randn(mu.shape, generator=g) * (eps / math.sqrt(d))
    return (mu + noise) / math.sqrt(1.0 + eps**2)


def load_task(path: str | Path) -> Task | MultimodalTask:
    """Load a task file of either kind (unimodal files carry no ``kind`` metadata).

    A missing file raises FileNotFoundError; an unreadable one CorruptFileError naming it.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            kind = (f.metadata() or {}).get("kind", "unimodal")
    except FileNotFoundError:
        raise
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptFileError(path, err) from None
    if kind == KIND:
        return MultimodalTask.load(path)
    if kind == "unimodal":
        return Task.load(path)
    raise CorruptFileError(path, f"unknown task kind {kind!r}")


def make_task(task_config: TaskConfig | MultimodalTaskConfig) -> Task | MultimodalTask:
    """A fresh task for a config of either kind, drawn from its seed."""
    if isinstance(task_config, MultimodalTaskConfig):
        return MultimodalTask.create(task_config)
    if isinstance(task_config, TaskConfig):
        return Task.create(task_config)
    raise TypeError(f"expected a TaskConfig or MultimodalTaskConfig, got {type(task_config).__name__}")
