"""Run configuration: dataclasses loaded from TOML, validated field by field.

A config file has the sections ``[task]``, ``[model]``, ``[train]`` (and ``[pipeline]`` for a
stage-2 run), whose keys are the names of SCIENCE.md (K, L, D, N, B, p_B, p_C, eps, alpha,
no_repeats, ...). Every bad value raises :class:`ConfigError` naming the field
(``section.key``) and what is allowed, so the CLI can print one line and exit with status 2.
Every number must be finite and in its range (no ``inf``, no ``nan``).

One module per concern, each importing only those before it: ``errors`` (the error and the
field checks) <- ``task``, ``model``, ``train`` (one section each) <- ``multimodal`` (the
two-modality task and the stage-2 pipeline) <- ``run`` (a whole run) <- ``load`` (TOML, shipped
names, ``--set`` overrides) and ``resources`` (the checks that depend on the machine). Every
name is re-exported here. The package imports no torch and nothing of the toolkit but
:mod:`mmicl_interp.types`.
"""

from __future__ import annotations

from mmicl_interp.config.errors import ConfigError
from mmicl_interp.config.load import CONFIG_DIR, load_config, parse_override, read_toml, resolve_config_path
from mmicl_interp.config.model import EMBED_INITS, ENCODERS, INIT_STD_MAX, MLP_INITS, ModelConfig
from mmicl_interp.config.multimodal import FREEZABLE, M1_POOLS, MultimodalTaskConfig, PipelineConfig
from mmicl_interp.config.resources import (
    available_memory,
    check_resources,
    memory_estimate,
    parameter_estimate,
    usable_cpus,
)
from mmicl_interp.config.run import RUN_KINDS, SEED_MAX, RunConfig, decoder_dims
from mmicl_interp.config.task import EPS_MAX, TaskConfig
from mmicl_interp.config.train import (
    CKPT_LOG_POINTS_MAX,
    CLAMP_PATTERNS,
    DEVICE_CHOICES,
    DEVICE_PATTERN,
    EXECUTION_FIELDS,
    LR_MAX,
    PRECISIONS,
    STEPS_MAX,
    WEIGHT_DECAY_MAX,
    ClampPattern,
    TrainConfig,
    n_checkpoints,
    n_dense_checkpoints,
)

__all__ = [
    "CKPT_LOG_POINTS_MAX",
    "CLAMP_PATTERNS",
    "CONFIG_DIR",
    "DEVICE_CHOICES",
    "DEVICE_PATTERN",
    "EMBED_INITS",
    "ENCODERS",
    "EPS_MAX",
    "EXECUTION_FIELDS",
    "FREEZABLE",
    "INIT_STD_MAX",
    "LR_MAX",
    "M1_POOLS",
    "MLP_INITS",
    "PRECISIONS",
    "RUN_KINDS",
    "SEED_MAX",
    "STEPS_MAX",
    "WEIGHT_DECAY_MAX",
    "ClampPattern",
    "ConfigError",
    "ModelConfig",
    "MultimodalTaskConfig",
    "PipelineConfig",
    "RunConfig",
    "TaskConfig",
    "TrainConfig",
    "available_memory",
    "check_resources",
    "decoder_dims",
    "load_config",
    "memory_estimate",
    "n_checkpoints",
    "n_dense_checkpoints",
    "parameter_estimate",
    "parse_override",
    "read_toml",
    "resolve_config_path",
    "usable_cpus",
]
