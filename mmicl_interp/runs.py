"""Reading a run back: its config, task, layout, metrics, and any checkpoint as a model.

``run = load_run("checkpoints/default")`` gives a :class:`Run`; ``run.model(step)`` loads
the weights of one checkpoint into a fresh hooked model, ``run.metrics()`` the eval table
as a pandas DataFrame, ``run.suites()`` the run's eval suites (redrawn from the stored task
and eval seed, cached; ``run.suites(n)`` is their first n sequences). ``run.run_id`` (also
``run.name``) names the run in tables and reports: the manifest's ``run_id``, else the
folder's name (two runs of one config are two runs).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from mmicl_interp import checkpoints as ck
from mmicl_interp.config import RunConfig
from mmicl_interp.data.layout import Layout
from mmicl_interp.data.multimodal import MultimodalTask, load_task
from mmicl_interp.data.task import Batch, Task
from mmicl_interp.model.encoder import EncoderClassifier
from mmicl_interp.model.factory import build_model, training_task
from mmicl_interp.model.transformer import ICLTransformer, max_pos_shift


@dataclass
class Run:
    """A run directory opened for analysis."""

    path: Path
    manifest: dict[str, Any]
    config: RunConfig
    device: Any = field(default=None, compare=False)
    """Where :meth:`model` and :meth:`suites` put models and batches unless told otherwise
    (a device name or ``torch.device``; None: the CPU). ``mmicl ... --device`` sets it."""
    _suites: dict[int | tuple[int, int], dict[str, Batch]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """Suite draws by size (see :meth:`suites`)."""

    @property
    def run_id(self) -> str:
        """The run's identity in tables and reports: the manifest's ``run_id``, else the folder's name.

        Not the config name: two runs of one config (``--out t1``, ``--out t2``) must not share rows.
        """
        return run_id_of(self.path, self.manifest)

    @property
    def name(self) -> str:
        """The run id (see :attr:`run_id`); the config's name is ``run.config.name``."""
        return self.run_id

    @property
    def identity(self) -> dict[str, str]:
        """What tells this run from another one under the same id: its manifest's creation time
        and config hash (stable when the folder is moved or copied), and its resolved path."""
        return identity_of(self.path, self.manifest)

    @property
    def complete(self) -> bool:
        return self.manifest.get("status") == "complete"

    @property
    def steps(self) -> list[int]:
        """Checkpoint steps present on disk."""
        return ck.list_checkpoints(self.path)

    @cached_property
    def task(self) -> Task | MultimodalTask:
        """The stored task (never re-derived from a seed)."""
        return load_task(self.path / ck.TASK)

    @property
    def layout(self) -> Layout:
        return self.task.layout

    def model(
        self, step: int | None = None, device: str | None = None
    ) -> ICLTransformer | EncoderClassifier:
        """A fresh model holding the weights of checkpoint ``step`` (default: the last), in eval
        mode, on ``device`` (a name or ``torch.device``; default: the run's :attr:`device`, else the
        CPU; ``auto``, ``cuda``, ``cuda:N``, ``mps`` also work, and a device this machine lacks
        raises ConfigError naming it).

        The hooked decoder, or for an encoder-pretraining run its encoder + classifier.
        """
        from mmicl_interp.device import resolve_device

        where = resolve_device(self.device if device is None else device, "device")
        steps = self.steps
        if not steps:
            raise FileNotFoundError(f"no checkpoints in {self.path / ck.CKPT_DIR}")
        step = steps[-1] if step is None else step
        if step not in steps:
            raise ValueError(f"step {step} has no checkpoint in {self.path}; available: {steps}")
        model = build_model(self.config)
        ck.load_weights(model, ck.ckpt_path(self.path, step))
        model.eval()
        return model.to(where)

    def suites(self, size: int | None = None, *, B: int | None = None) -> dict[str, Batch]:
        """The run's eval suites, redrawn from the stored task and eval seed; the first ``size``
        sequences of each (default: all ``task.eval_size``, the suites training evaluated on).

        ``run.suites(100)["icl"]`` is ``run.suites()["icl"][:100]``: smaller sizes are prefixes
        of one draw, so analyses at different sizes see the same sequences. A ``size`` above
        ``eval_size`` cannot extend that draw (the suites share one generator), so it is a
        separate draw of ``size`` sequences from the same seed, the same on every call, whose
        first ``eval_size`` differ from the eval suites. Draws are cached on the run (on the
        CPU); the batches share tensors with the cache, so do not modify them in place. With a
        run :attr:`device` set, the batches come on that device.

        ``B`` redraws the suites with another burstiness (``Task.with_config(B=B)``: the same
        classes and labels, the same eval seed): e.g. ``B=2`` gives runs trained at different
        B one common icl suite, whose context-label plateau 1/(N/B) is the same for all.
        """
        eval_size = self.config.task.eval_size
        size = eval_size if size is None else size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size: expected a positive number of sequences, got {size!r}")
        drawn = self._draw(max(size, eval_size), B)
        suites = {name: batch[:size] for name, batch in drawn.items()}
        if self.device is None:
            return suites
        from mmicl_interp.device import resolve_device

        where = resolve_device(self.device, "device")
        return {name: batch.to(where) for name, batch in suites.items()}

    def _draw(self, size: int, B: int | None = None) -> dict[str, Batch]:
        """All suites at ``size`` sequences each (burstiness ``B``), drawn once and kept."""
        key = size if B is None else (size, B)
        if key not in self._suites:
            task = training_task(self.config, self.task)
            if B is not None:
                if not hasattr(task, "with_config") or self.config.kind != "unimodal":
                    raise ValueError(f"B: suites with another B need a unimodal run; {self.path} is not")
                task = task.with_config(B=B)
            shift = max_pos_shift(self.config.model, task.layout.n_ctx) if task.layout else 0
            self._suites[key] = task.suites(self.config.task.eval_seed, size, max_shift=shift)
        return self._suites[key]

    def metrics(self) -> pd.DataFrame:
        """The eval table: one row per (step, suite) with accuracy, loss, chance."""
        rows = ck.read_metrics(self.path)
        return pd.DataFrame(rows, columns=["step", "suite", "accuracy", "loss", "chance"])


N_SEQS_MAX = 100_000
"""Most sequences per suite an analysis of a run takes, whatever the memory."""


def sequence_bytes(config: RunConfig) -> int:
    """An upper estimate of the memory one sequence of every suite costs an analysis: the suites'
    inputs, and the activations, patterns and caches of one forward pass with hooks (the
    analyses score a suite in one batch)."""
    from mmicl_interp.config import MultimodalTaskConfig, decoder_dims

    f32 = 4
    if config.kind == "encoder":
        tc = config.task
        return 64 * f32 * (tc.D2 + (config.model.d_encoder or 4 * tc.D2)) + 4096
    dims = decoder_dims(config)
    mc = config.model
    ctx, d_model, n_layers, n_heads = dims["n_ctx"], dims["d_model"], mc.n_layers, mc.n_heads
    n_suites = 6 if isinstance(config.task, MultimodalTaskConfig) else 4
    suites = n_suites * ctx * (dims["d_input"] * 2 + 8) * f32
    per_layer = ctx * d_model * 12 + ctx * n_heads * dims["d_head"] * 6 + 4 * n_heads * ctx * ctx
    if mc.mlp != "none":
        per_layer += 3 * ctx * dims["d_mlp"]
    forward = f32 * (n_layers * per_layer + ctx * d_model * 4)
    return int(suites + forward + 256)


def max_sequences(config: RunConfig) -> tuple[int, int, int | None]:
    """The most sequences per suite an analysis of a run with ``config`` may take on this machine:
    ``(limit, bytes per sequence, bytes of memory available or None)``; ``limit`` is at most
    :data:`N_SEQS_MAX` and leaves a fifth of the available memory free (measured: ablating a head of
    the default run costs about 45 kB per sequence; this estimate says 170 kB)."""
    from mmicl_interp.config import available_memory

    per_seq = sequence_bytes(config)
    avail = available_memory()
    limit = N_SEQS_MAX if avail is None else min(N_SEQS_MAX, max(1, int(avail * 0.8) // per_seq))
    return int(limit), per_seq, avail


def identity_of(path: str | Path, manifest: dict[str, Any]) -> dict[str, str]:
    """A run folder's identity (see :attr:`Run.identity`): resolved path, creation time, config hash."""
    config = json.dumps(manifest.get("config"), sort_keys=True, default=str)
    return {
        "path": str(Path(path).resolve()),
        "created": str(manifest.get("created") or ""),
        "config_sha": hashlib.sha256(config.encode()).hexdigest()[:16],
    }


def run_id_of(path: str | Path, manifest: dict[str, Any]) -> str:
    """A run folder's id: the manifest's ``run_id`` when set, else the folder's name."""
    value = manifest.get("run_id")
    if isinstance(value, str) and value.strip():
        return value.strip()
    return Path(path).resolve().name


def load_run(path: str | Path) -> Run:
    """Open a run directory written by ``mmicl train``."""
    path = Path(path)
    manifest = ck.read_manifest(path)
    config = RunConfig.from_dict(manifest["config"])
    return Run(path=path, manifest=manifest, config=config)
