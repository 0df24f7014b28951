"""The M2 encoder and its pretraining head (SCIENCE.md section 4, stage 3).

``EncoderClassifier``: ``logits = encoder(x) W_cls + b_cls`` over the K2 classes, with
``encoder`` the same :class:`~mmicl_interp.model.components.GeluMLP` (and parameter names,
``encoder.*``) as the encoder inside a multimodal :class:`ICLTransformer`, so pretrained
weights load there unchanged (``pipeline.encoder_from``).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import nn

from mmicl_interp.config import ModelConfig, MultimodalTaskConfig
from mmicl_interp.model.components import GeluMLP
from mmicl_interp.model.transformer import init_normal


class EncoderClassifier(nn.Module):
    """An M2 encoder with a linear K2-way classification head, for pretraining."""

    def __init__(self, model_config: ModelConfig, task_config: MultimodalTaskConfig):
        super().__init__()
        if model_config.encoder != "mlp":
            raise ValueError(f"model.encoder: must be mlp for an encoder run, got {model_config.encoder!r}")
        d_out = model_config.d_encoder or task_config.D2
        self.model_config = model_config
        self.encoder = GeluMLP(task_config.D2, model_config.encoder_hidden, d_out)
        self.W_cls = nn.Parameter(torch.empty(d_out, task_config.K2))
        self.b_cls = nn.Parameter(torch.zeros(task_config.K2))
        init_normal(self, model_config.seed, model_config.init_std)

    def max_shift_for(self, n_ctx: int) -> int:
        """No positions: always 0 (the trainer asks every model)."""
        return 0

    def forward(
        self, inputs: Float[torch.Tensor, "batch d2"], pos_shift: Int[torch.Tensor, " batch"] | None = None
    ) -> Float[torch.Tensor, "batch k2"]:
        """Class logits of a batch of M2 items."""
        return self.encoder(inputs) @ self.W_cls + self.b_cls
