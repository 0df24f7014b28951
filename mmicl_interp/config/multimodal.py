"""The multimodal ``[task]`` section (two modalities, joint labels) and the stage-2 ``[pipeline]``."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmicl_interp.config.errors import ConfigError, _choice, _int, _positive_int
from mmicl_interp.config.task import _check_zipf_labels, _ContextChecks

FREEZABLE: tuple[str, ...] = ("embed", "blocks", "ln_final", "readout", "projector", "encoder")

M1_POOLS: tuple[str, ...] = ("partners", "all")
"""Allowed ``task.m1_pool`` values of a multimodal task."""


@dataclass
class MultimodalTaskConfig(_ContextChecks):
    """The two-modality task (SCIENCE.md section 4): M1 ("primary") and M2 ("secondary").

    Exemplars are triplets (M1 item, M2 item, label); M2 class k2 has label k2 mod L2 and
    the M2 labels are the first L2 of the M1 label vectors. N, B, p_B, p_C and no_repeats
    are shared; alpha, eps (and K, D) are per modality.

    Joint-label variant (``joint_labels = true``): M1 class k1 has group ``k1 mod G1``, M2
    class k2 has group ``k2 mod G2``, the two classes of an exemplar are drawn independently
    and its label is ``group(m1) * G2 + group(m2)``, so both modalities are needed. The label
    space is then the G1*G2 joint labels, hence ``L2 = G1 * G2`` (<= L1).
    """

    K1: int = 8192
    L1: int = 32
    D1: int = 32
    alpha1: float = 0.0
    eps1: float = 0.1
    K2: int = 64
    L2: int = 32
    D2: int = 32
    alpha2: float = 0.0
    eps2: float = 0.1
    N: int = 8
    B: int = 2
    p_B: float = 1.0
    p_C: float = 0.0
    no_repeats: bool = False
    K_c: int = 128
    seed: int = 0
    eval_seed: int = 1
    eval_size: int = 1000
    joint_labels: bool = False
    """Joint-label variant: label = group(m1) * G2 + group(m2) (both modalities needed)."""
    G1: int = 0
    """Joint labels only: number of M1 groups (class k1 in group k1 mod G1); 0 otherwise."""
    G2: int = 0
    """Joint labels only: number of M2 groups (class k2 in group k2 mod G2); 0 otherwise."""
    m1_pool: str = "partners"
    """The M1 class of a known exemplar of M2 class k2: ``partners`` (its fixed partner) or
    ``all`` (per context slot, a fresh M1 class of label k2 mod L2, uniform over all K1
    classes: multimodal training on high-K1 M1 data). Not with joint labels; needs alpha1 = 0."""

    def validate(self) -> None:
        _positive_int(self, "task", ("K1", "K2", "D1", "D2", "N", "K_c", "eval_size"))
        _choice(self, "task", "m1_pool", M1_POOLS)
        if self.m1_pool == "all" and self.joint_labels:
            raise ConfigError("task.m1_pool", "must be partners with joint_labels = true (they pair freely)")
        if self.m1_pool == "all" and self.alpha1 != 0:
            raise ConfigError(
                "task.alpha1", f"must be 0 with m1_pool = all (uniform M1 classes), got {self.alpha1}"
            )
        _int(self, "task", ("seed", "eval_seed", "B", "L1", "L2"))
        if self.L1 < 2:
            raise ConfigError("task.L1", f"must be an integer >= 2, got {self.L1}")
        if not 2 <= self.L2 <= self.L1:
            raise ConfigError("task.L2", f"must be an integer in [2, L1={self.L1}], got {self.L2}")
        if self.K1 % self.L1 != 0:
            raise ConfigError("task.K1", f"must be divisible by L1={self.L1}, got K1={self.K1}")
        if self.K2 % self.L2 != 0:
            raise ConfigError("task.K2", f"must be divisible by L2={self.L2}, got K2={self.K2}")
        self._validate_context(("eps1", "eps2", "alpha1", "alpha2"))
        self._check_distinct_labels("L2", self.L2)
        if self.K_c % self.L2 != 0:
            raise ConfigError("task.K_c", f"must be divisible by L2={self.L2}, got {self.K_c}")
        self._validate_joint()
        n_slots = self.N // self.B if self.B else 0
        if self.no_repeats and not self.joint_labels:
            _check_zipf_labels("alpha2", self.alpha2, self.K2, n_slots)
        elif self.no_repeats:  # a joint label's probability is P(group 1) * P(group 2)
            _check_zipf_labels("alpha1", self.alpha1, self.K1, min(n_slots, self.G1), 0.5)
            _check_zipf_labels("alpha2", self.alpha2, self.K2, min(n_slots, self.G2), 0.5)

    def _validate_joint(self) -> None:
        if not isinstance(self.joint_labels, bool):
            raise ConfigError("task.joint_labels", f"must be true or false, got {self.joint_labels!r}")
        _int(self, "task", ("G1", "G2"))
        if not self.joint_labels:
            for name in ("G1", "G2"):
                if getattr(self, name) != 0:
                    raise ConfigError(
                        f"task.{name}",
                        f"applies only with joint_labels = true; leave it 0, got {getattr(self, name)}",
                    )
            return
        for name in ("G1", "G2"):
            if getattr(self, name) < 2:
                raise ConfigError(
                    f"task.{name}",
                    f"must be an integer >= 2 when joint_labels = true, got {getattr(self, name)}",
                )
        n_joint = self.G1 * self.G2
        if n_joint > self.L1:
            raise ConfigError(
                "task.G2",
                f"needs G1*G2 <= L1={self.L1} joint labels, got G1*G2={self.G1}*{self.G2}={n_joint}",
            )
        if n_joint != self.L2:
            raise ConfigError(
                "task.L2",
                f"must equal G1*G2={n_joint} (the joint label space) when joint_labels = true, got {self.L2}",
            )
        if self.K1 % self.G1 != 0:
            raise ConfigError(
                "task.K1", f"must be divisible by G1={self.G1} when joint_labels, got K1={self.K1}"
            )
        if self.K2 % self.G2 != 0:
            raise ConfigError(
                "task.K2", f"must be divisible by G2={self.G2} when joint_labels, got K2={self.K2}"
            )

    @property
    def L(self) -> int:
        """Number of read-out labels (the shared label space, L1)."""
        return self.L1

    @property
    def D(self) -> int:
        """Width of a packed input vector: D1 columns for M1 items and labels, then D2 for M2."""
        return self.D1 + self.D2

    @property
    def n_ctx(self) -> int:
        return 3 * self.N + 2


@dataclass
class PipelineConfig:
    """Stage-2 training (SCIENCE.md section 4): start from a stage-1 run, freeze parts."""

    init_from: str = ""
    """A stage-1 run directory: its decoder weights, label vectors and M1 class means are
    loaded from its files (never re-derived from seeds). Empty: train from scratch."""
    encoder_from: str = ""
    """A pretrained encoder run (``kind = "encoder"``): its encoder weights and M2 class means
    are loaded from its files. Empty: the encoder (if any) starts fresh."""
    freeze: list[str] = field(default_factory=list)
    """Parts that do not train: any of embed, blocks, ln_final, readout, projector, encoder."""
    early_fusion: bool = False
    """The control: the same multimodal training from scratch (needs init_from empty)."""

    def validate(self) -> None:
        for name in ("init_from", "encoder_from"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(
                    f"pipeline.{name}", f"must be a run directory path, got {getattr(self, name)!r}"
                )
        if not isinstance(self.freeze, list) or any(p not in FREEZABLE for p in self.freeze):
            raise ConfigError(
                "pipeline.freeze",
                f"must be a list of parts among {', '.join(FREEZABLE)}; got {self.freeze!r}",
            )
        if self.early_fusion and self.init_from:
            raise ConfigError("pipeline.early_fusion", "means training from scratch: leave init_from empty")
