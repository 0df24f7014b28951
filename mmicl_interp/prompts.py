"""The prompt seam: what every analysis needs to know about a batch of few-shot prompts.

An :class:`ICLPrompts` holds the model inputs and, per prompt, where each exemplar's
item(s) and label sit, where the prediction is read, the target and the alternative.
Every measure, ablation and patching function of :mod:`mmicl_interp.analyses` takes
``(model, prompts)`` and calls the model only through it::

    out = model.run_with_hooks(prompts.inputs, **prompts.kwargs, fwd_hooks=...)
    label_logits = prompts.label_logits(out)  # [batch, n_labels]

so the same code serves the small synthetic models (continuous inputs ``[batch, pos, d]``,
one position per item and label, ``pos_shift`` as model keyword, output already
``[batch, n_labels]``) and real language models (token ids ``[batch, pos]``, labels of
several tokens, padding, per-prompt positions, an ``attention_mask`` keyword and token
logits read out by :class:`TokenReadout`).

Spans are ``[start, end)`` pairs (end exclusive) of token positions, in int64 tensors
``[batch, n, 2]`` (n exemplars per prompt). An exemplar whose label span is empty
(``start == end``) is absent in that prompt (prompts with fewer exemplars than n) and
counts in no measure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Bool, Float, Int

if TYPE_CHECKING:
    from mmicl_interp.data.layout import Layout
    from mmicl_interp.data.task import Batch

Readout = Callable[[Any, "ICLPrompts"], Float[torch.Tensor, "batch n_labels"]]
"""Maps the model's output on a batch of prompts to label logits ``[batch, n_labels]``."""


@dataclass
class TokenReadout:
    """Label logits of a language model: token logits at each prompt's read-out position,
    taken at each candidate label's first token.

    ``label_tokens`` holds the first token id of every candidate label, ``[n_labels]`` when
    all prompts share the candidates or ``[batch, n_labels]`` when each prompt has its own
    (then sliced with the prompts). The model output is ``[batch, pos, vocab]`` (or an object
    with ``.logits``); the result is ``logits[b, readout_position[b], label_tokens[(b,) j]]``.
    """

    label_tokens: Int[torch.Tensor, "*batch n_labels"]

    def __call__(self, output: Any, prompts: ICLPrompts) -> Float[torch.Tensor, "batch n_labels"]:
        logits = getattr(output, "logits", output)
        rows = torch.arange(logits.shape[0], device=logits.device)
        at_readout = logits[rows, prompts.readout_position.to(logits.device)]  # [batch, vocab]
        tokens = self.label_tokens.to(logits.device)
        if tokens.ndim == 1:
            return at_readout[:, tokens]
        return at_readout.gather(1, tokens)

    def select(self, index: slice | torch.Tensor) -> TokenReadout:
        """The read-out of a subset of the prompts (per-prompt candidates are sliced)."""
        if self.label_tokens.ndim == 1:
            return self
        return TokenReadout(self.label_tokens[_on(index, self.label_tokens)])


def _on(index: slice | torch.Tensor, t: torch.Tensor) -> slice | torch.Tensor:
    return index.to(t.device) if isinstance(index, torch.Tensor) else index


def one_token_spans(
    positions: Int[torch.Tensor, " n"] | list[int] | tuple[int, ...], batch: int, device=None
) -> Int[torch.Tensor, "batch n 2"]:
    """Spans ``[p, p + 1)`` of one token each, the same for every one of ``batch`` prompts."""
    p = torch.as_tensor(positions, dtype=torch.long, device=device)
    return torch.stack([p, p + 1], dim=-1).expand(batch, -1, -1)


@dataclass
class ICLPrompts:
    """A batch of few-shot prompts and where their parts sit (see the module docstring).

    Per-prompt fields (leading dim ``batch``) are sliced by ``prompts[index]`` and moved by
    ``.to(device)``; so is every tensor in ``model_kwargs`` (each must be batch-first, e.g.
    ``pos_shift`` [batch] or ``attention_mask`` [batch, pos]). ``shared_kwargs`` go to the
    model unchanged by slicing (e.g. flags); their tensors are moved by ``.to``.
    """

    inputs: torch.Tensor
    """Model input: continuous vectors ``[batch, pos, d]`` or token ids ``[batch, pos]``."""
    item_spans: dict[str, Int[torch.Tensor, "batch n 2"]]
    """Per modality (``"m1"``, ``"m2"``, ...), each exemplar's item span ``[start, end)``."""
    label_spans: Int[torch.Tensor, "batch n 2"]
    """Each exemplar's label span ``[start, end)``; empty (start == end) = no such exemplar."""
    readout_position: Int[torch.Tensor, " batch"]
    """The position whose output predicts the answer (the attention measures' query row)."""
    targets: Int[torch.Tensor, " batch"]
    """Index of the correct answer among the candidate labels."""
    context_labels: Int[torch.Tensor, "batch n"]
    """Index (among the candidates) of the label shown with each exemplar."""
    matches: Bool[torch.Tensor, "batch n"] | None = None
    """Exemplars whose label is the target (the set M); default ``context_labels == targets``."""
    alternatives: Int[torch.Tensor, " batch"] | None = None
    """The other label of logit differences ``logit[target] - logit[alternative]``."""
    token_mask: Bool[torch.Tensor, "batch pos"] | None = None
    """True at real tokens, False at padding; None = no padding."""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    """Per-prompt (batch-first) keyword arguments of the model call."""
    shared_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the model call that do not depend on the prompt."""
    readout: Readout | None = None
    """Model output -> label logits ``[batch, n_labels]``; None = the output already is."""

    def __post_init__(self) -> None:
        if self.matches is None:
            self.matches = self.context_labels == self.targets[:, None]
        n_batch = self.inputs.shape[0]
        n = self.label_spans.shape[1] if self.label_spans.ndim == 3 else -1
        checks = {
            "label_spans": (self.label_spans, (n_batch, n, 2)),
            "readout_position": (self.readout_position, (n_batch,)),
            "targets": (self.targets, (n_batch,)),
            "context_labels": (self.context_labels, (n_batch, n)),
            "matches": (self.matches, (n_batch, n)),
        }
        for modality, spans in self.item_spans.items():
            checks[f"item_spans[{modality!r}]"] = (spans, (n_batch, n, 2))
        if self.alternatives is not None:
            checks["alternatives"] = (self.alternatives, (n_batch,))
        if self.token_mask is not None:
            checks["token_mask"] = (self.token_mask, tuple(self.inputs.shape[:2]))
        for name, (value, shape) in checks.items():
            if tuple(value.shape) != shape:
                raise ValueError(
                    f"{name}: expected shape {list(shape)} for {n_batch} prompts of {n} exemplars, "
                    f"got {list(value.shape)}"
                )
        for name, value in self.model_kwargs.items():
            if isinstance(value, torch.Tensor) and (value.ndim == 0 or value.shape[0] != n_batch):
                raise ValueError(
                    f"model_kwargs[{name!r}]: per-prompt tensors must be batch-first ({n_batch} rows), "
                    f"got shape {list(value.shape)}; put prompt-independent values in shared_kwargs"
                )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_layout(
        cls,
        layout: Layout,
        inputs: torch.Tensor,
        targets: Int[torch.Tensor, " batch"],
        context_labels: Int[torch.Tensor, "batch n"],
        **fields_: Any,
    ) -> ICLPrompts:
        """Prompts whose parts all sit where one fixed :class:`Layout` says, one token each."""
        n_batch, device = inputs.shape[0], inputs.device
        items = {m: one_token_spans(p, n_batch, device) for m, p in layout.item_positions.items()}
        return cls(
            inputs=inputs,
            item_spans=items,
            label_spans=one_token_spans(layout.label_positions, n_batch, device),
            readout_position=torch.full((n_batch,), layout.readout_position, dtype=torch.long, device=device),
            targets=targets,
            context_labels=context_labels,
            **fields_,
        )

    @classmethod
    def from_batch(
        cls, batch: Batch, layout: Layout | None = None, alternatives: torch.Tensor | None = None
    ) -> ICLPrompts:
        """The prompts of a synthetic-task :class:`~mmicl_interp.data.task.Batch`.

        ``layout`` defaults to the batch's own (``batch.layout``, set by the task samplers); a
        batch without exemplars (N = 0, e.g. encoder data) needs none and gets no spans. The
        model gets ``pos_shift`` as keyword; its output is already label logits.
        """
        n = batch.context_labels.shape[1]
        layout = batch.layout if layout is None else layout
        if layout is None and n > 0:
            raise ValueError(
                f"layout: the batch of {n} exemplars carries no layout (batches from Task.sample and "
                "MultimodalTask.sample do); pass the layout"
            )
        if layout is not None and (layout.n_exemplars != n or layout.n_ctx != batch.inputs.shape[1]):
            raise ValueError(
                f"layout: {layout.n_exemplars} exemplars in {layout.n_ctx} positions, but the batch has "
                f"{n} exemplars in {batch.inputs.shape[1]} positions"
            )
        extra = dict(
            matches=batch.matches(), alternatives=alternatives, model_kwargs={"pos_shift": batch.pos_shift}
        )
        if layout is None:  # no exemplars: no spans; read out at the last position
            empty = batch.inputs.new_zeros(len(batch), 0, 2, dtype=torch.long)
            last = batch.inputs.shape[1] - 1 if batch.inputs.ndim > 2 else 0
            return cls(
                inputs=batch.inputs,
                item_spans={"m1": empty},
                label_spans=empty,
                readout_position=torch.full_like(batch.targets, last),
                targets=batch.targets,
                context_labels=batch.context_labels,
                **extra,
            )
        return cls.from_layout(layout, batch.inputs, batch.targets, batch.context_labels, **extra)

    # ------------------------------------------------------------------ container
    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: slice | torch.Tensor) -> ICLPrompts:
        """The prompts ``index`` selects (a slice, an index tensor or a boolean mask)."""
        if isinstance(index, int):
            index = slice(index, index + 1)

        def take(t):
            return t[_on(index, t)] if isinstance(t, torch.Tensor) else t

        readout = self.readout
        if isinstance(readout, TokenReadout):
            readout = readout.select(index)
        return replace(
            self,
            inputs=take(self.inputs),
            item_spans={m: take(s) for m, s in self.item_spans.items()},
            label_spans=take(self.label_spans),
            readout_position=take(self.readout_position),
            targets=take(self.targets),
            context_labels=take(self.context_labels),
            matches=take(self.matches),
            alternatives=take(self.alternatives),
            token_mask=take(self.token_mask),
            model_kwargs={k: take(v) for k, v in self.model_kwargs.items()},
            readout=readout,
        )

    def to(self, device: torch.device | str) -> ICLPrompts:
        """The same prompts with every tensor on ``device`` (model inputs and kwargs too)."""

        def move(t):
            return t.to(device) if isinstance(t, torch.Tensor) else t

        values = {f.name: move(getattr(self, f.name)) for f in fields(self)}
        values["item_spans"] = {m: move(s) for m, s in self.item_spans.items()}
        values["model_kwargs"] = {k: move(v) for k, v in self.model_kwargs.items()}
        values["shared_kwargs"] = {k: move(v) for k, v in self.shared_kwargs.items()}
        readout = self.readout
        if isinstance(readout, TokenReadout):
            readout = TokenReadout(readout.label_tokens.to(device))
        values["readout"] = readout
        return ICLPrompts(**values)

    # ------------------------------------------------------------------ reading
    @property
    def device(self) -> torch.device:
        return self.inputs.device

    @property
    def n_positions(self) -> int:
        return self.inputs.shape[1]

    @property
    def n_exemplars(self) -> int:
        return self.label_spans.shape[1]

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.item_spans)

    @property
    def kwargs(self) -> dict[str, Any]:
        """Every keyword argument of the model call: ``model(inputs, **prompts.kwargs)``."""
        return {**self.shared_kwargs, **self.model_kwargs}

    @property
    def exemplar_mask(self) -> Bool[torch.Tensor, "batch n"]:
        """True for exemplars present in the prompt (non-empty label span)."""
        return self.label_spans[..., 1] > self.label_spans[..., 0]

    def real_tokens(self) -> Bool[torch.Tensor, "batch pos"]:
        """True at real tokens (all True without padding)."""
        if self.token_mask is not None:
            return self.token_mask.bool()
        return torch.ones(self.inputs.shape[:2], dtype=torch.bool, device=self.device)

    def run(
        self,
        model: torch.nn.Module,
        fwd_hooks: Sequence[tuple[str, Callable]] = (),
        cache: Iterable[str] = (),
    ) -> tuple[Any, dict[str, torch.Tensor]]:
        """Run ``model`` on these prompts with ``fwd_hooks``, keeping the activations in ``cache``.

        ``model.run_with_hooks(inputs, **kwargs, fwd_hooks=...)``: works for any TransformerLens
        hooked model. Cached activations are taken after the given hooks acted (detached).
        Returns (model output, name -> activation).
        """
        acts: dict[str, torch.Tensor] = {}

        def keeper(name: str) -> Callable:
            # keyed by the name asked for: a TransformerBridge serves some names through an
            # alias (its ``blocks.{l}.attn.hook_z`` is the hook point ``blocks.{l}.attn.o.hook_in``)
            def keep(act, hook):
                acts[name] = act.detach()

            return keep

        hooks = [*fwd_hooks, *((name, keeper(name)) for name in cache)]
        out = model.run_with_hooks(self.inputs, **self.kwargs, fwd_hooks=hooks)
        return out, acts

    def label_logits(self, output: Any) -> Float[torch.Tensor, "batch n_labels"]:
        """The model output on these prompts mapped to label logits (``readout``)."""
        if self.readout is None:
            return getattr(output, "logits", output)
        return self.readout(output, self)

    def with_alternatives(self, alternatives: Int[torch.Tensor, " batch"]) -> ICLPrompts:
        return replace(self, alternatives=alternatives)


def as_prompts(data: ICLPrompts | Batch, layout: Layout | None = None) -> ICLPrompts:
    """``data`` as :class:`ICLPrompts` (a Batch is converted with ``layout``, see ``from_batch``)."""
    if isinstance(data, ICLPrompts):
        return data
    return ICLPrompts.from_batch(data, layout)


def as_prompt_suites(
    suites: Mapping[str, ICLPrompts | Batch] | ICLPrompts | Batch, layout: Layout | None = None
) -> dict[str, ICLPrompts]:
    """Suite name -> prompts; a single batch or prompts object is the suite ``"batch"``."""
    from mmicl_interp.data.task import Batch

    if isinstance(suites, (ICLPrompts, Batch)):
        return {"batch": as_prompts(suites, layout)}
    if not isinstance(suites, Mapping) or not suites:
        raise ValueError("suites: expected a Batch / ICLPrompts or a non-empty dict of suite name -> them")
    return {name: as_prompts(value, layout) for name, value in suites.items()}


__all__ = [
    "ICLPrompts",
    "Readout",
    "TokenReadout",
    "as_prompt_suites",
    "as_prompts",
    "one_token_spans",
]
