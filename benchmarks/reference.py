"""A plain-PyTorch implementation of the same math as ``ICLTransformer`` (no hooks).

Used only by the benchmark, as the reference our hooked model's step time is compared to:
nn.Linear projections, pre-RMSNorm, causal softmax attention, one-hot APE concatenated.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PlainRMSNorm(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


class PlainBlock(nn.Module):
    def __init__(self, d: int, n_heads: int, mlp: str):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d // n_heads
        self.norm1 = PlainRMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.mlp = mlp
        if mlp == "paper_gated":
            self.norm2 = PlainRMSNorm(d)
            self.fc1 = nn.Linear(d, d)
            self.fc2 = nn.Linear(d, d)
            self.fc3 = nn.Linear(d, d)

    def forward(self, x, mask):
        b, p, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, p, 3, self.n_heads, self.d_head).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.d_head) + mask
        z = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, p, d)
        x = x + self.out(z)
        if self.mlp == "paper_gated":
            h = self.norm2(x)
            x = x + self.fc3(F.silu(self.fc1(h) * self.fc2(h)))
        return x


class PlainICLModel(nn.Module):
    """Same shapes and operations as ICLTransformer with onehot positions and RMSNorm."""

    def __init__(self, d_input: int, n_labels: int, n_layers: int, n_heads: int, pos_width: int, mlp: str):
        super().__init__()
        d = d_input + pos_width
        self.pos_width = pos_width
        self.blocks = nn.ModuleList(PlainBlock(d, n_heads, mlp) for _ in range(n_layers))
        self.norm = PlainRMSNorm(d)
        self.readout = nn.Linear(d, n_labels)

    def forward(self, x, shift):
        b, p, _ = x.shape
        index = torch.arange(p)[None, :] + shift[:, None]
        block = torch.zeros(b, p, self.pos_width).scatter_(2, index[..., None], 1.0)
        x = torch.cat([x, block], -1)
        mask = torch.full((p, p), float("-inf")).triu(1)
        for blk in self.blocks:
            x = blk(x, mask)
        return self.readout(self.norm(x[:, -1]))
