"""The unimodal task's ``[task]`` section, and the context checks both task kinds share."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mmicl_interp.config.errors import ConfigError, _int, _number, _positive_int

EPS_MAX = 1e6
"""Largest within-class noise: beyond it an item is noise to 1 part in a million (and eps^2 overflows)."""
_FLOAT32_TINY = 1.2e-38  # smallest normal float32


class _ContextChecks:
    """The checks a unimodal and a multimodal task share (fields N, B, p_B, p_C, no_repeats).

    A mixin without fields: each task dataclass declares its own, in its own order (the order
    in which ``from_dict`` reports bad values and lists the allowed keys).
    """

    N: int
    B: int
    p_B: float
    p_C: float
    no_repeats: bool

    def _validate_context(self, nonnegative: tuple[str, ...]) -> None:
        """B, p_B, p_C, and the noise and Zipf fields ``nonnegative`` (>= 0, eps <= EPS_MAX)."""
        if self.B < 0 or self.B >= self.N or (self.B > 0 and self.N % self.B != 0):
            raise ConfigError("task.B", f"must be 0 or a divisor of N={self.N} with 0 < B < N, got {self.B}")
        for name in ("p_B", "p_C"):
            _number(self, "task", name, 0.0, 1.0)
        if self.p_B > 0 and self.B == 0:
            raise ConfigError("task.p_B", "must be 0 when B = 0 (no bursty sequences)")
        for name in nonnegative:
            _number(self, "task", name, 0.0)
            if name.startswith("eps") and getattr(self, name) > EPS_MAX:
                raise ConfigError(
                    f"task.{name}",
                    f"must be a finite number >= 0 and <= {EPS_MAX:g} (beyond, items are pure noise and "
                    f"overflow float32), got {getattr(self, name)!r}",
                )

    def _check_distinct_labels(self, label_field: str, n_labels: int) -> None:
        """``no_repeats`` needs N/B distinct labels per context out of ``n_labels``."""
        n_ctx_classes = self.N // self.B if self.B else self.N
        if self.no_repeats and n_ctx_classes > n_labels:
            raise ConfigError(
                "task.no_repeats",
                f"needs N/B <= {label_field} distinct labels per context, got N/B={n_ctx_classes}, "
                f"{label_field}={n_labels}",
            )


@dataclass
class TaskConfig(_ContextChecks):
    """The unimodal Gaussian-mixture few-shot task (SCIENCE.md section 1)."""

    K: int = 8192
    """Number of training classes (class diversity, the main data-complexity knob)."""
    L: int = 32
    """Number of labels; class k has label k mod L."""
    D: int = 64
    """Feature dimension of items and label vectors."""
    N: int = 8
    """Exemplar (item, label) pairs per context."""
    B: int = 2
    """Burstiness: copies of each class in a bursty context (0 = no bursty sequences)."""
    p_B: float = 1.0
    """Fraction of bursty sequences."""
    p_C: float = 0.0
    """Fraction of sequences drawn from novel classes."""
    eps: float = 0.1
    """Within-class noise."""
    alpha: float = 0.0
    """Zipf exponent of the class distribution (P(k) ~ k^-alpha)."""
    no_repeats: bool = False
    """Bursty contexts use distinct labels."""
    K_c: int = 128
    """Size of each fresh set of novel classes."""
    seed: int = 0
    """Seed of the task itself (class means, label vectors) and of the training data."""
    eval_seed: int = 1
    """Seed of the four eval suites, drawn once per run."""
    eval_size: int = 1000
    """Sequences per eval suite."""

    def validate(self) -> None:
        _positive_int(self, "task", ("K", "D", "N", "K_c", "eval_size"))
        _int(self, "task", ("seed", "eval_seed", "B", "L"))
        if self.L < 2:
            raise ConfigError("task.L", f"must be an integer >= 2, got {self.L}")
        if self.K % self.L != 0:
            raise ConfigError("task.K", f"must be divisible by L={self.L}, got K={self.K}")
        self._validate_context(("eps", "alpha"))
        if self.no_repeats:
            _check_zipf_labels("alpha", self.alpha, self.K, self.N // self.B if self.B else 0)
        if not isinstance(self.no_repeats, bool):
            raise ConfigError("task.no_repeats", f"must be true or false, got {self.no_repeats!r}")
        self._check_distinct_labels("L", self.L)
        if self.no_repeats and self.K_c % self.L != 0:
            raise ConfigError("task.K_c", f"must be divisible by L={self.L} when no_repeats, got {self.K_c}")
        if self.B and self.N // self.B > self.K_c:
            raise ConfigError("task.K_c", f"must be >= N/B={self.N // self.B}, got {self.K_c}")


def _check_zipf_labels(name: str, alpha: float, K: int, n_needed: int, share: float = 1.0) -> None:
    """With ``no_repeats`` a bursty context draws N/B distinct labels from the Zipf law: the
    ``n_needed``-th most likely one must keep a probability float32 holds, else sampling fails.

    P(label j) >= (j+1)^-alpha / H with H = sum_k k^-alpha <= 1 + min(ln K, 1/(alpha-1)), and
    for alpha < 1, H <= 1 + (K^(1-alpha) - 1) / (1 - alpha). ``share`` < 1 when two such
    probabilities multiply (joint labels): each must reach tiny^share.
    """
    if n_needed <= 1 or alpha == 0:
        return
    if alpha >= 1:
        h = 1.0 + math.log(K)
        if alpha > 1:
            h = min(h, 1.0 + 1.0 / (alpha - 1.0))
    else:
        h = 1.0 + (K ** (1.0 - alpha) - 1.0) / (1.0 - alpha)
    log_tiny = share * math.log(_FLOAT32_TINY)
    if -alpha * math.log(n_needed) - math.log(h) < log_tiny:
        limit = (-log_tiny - math.log(h)) / math.log(n_needed)
        raise ConfigError(
            f"task.{name}",
            f"is too large for no_repeats: {n_needed} distinct labels per context (N/B) need "
            f"{name} <= about {math.floor(limit)} (rarer labels underflow float32), got {alpha:g}",
        )
