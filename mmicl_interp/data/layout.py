"""Where items, labels and the query sit in a sequence.

Every measure asks the layout, never hard-codes ``2i`` / ``2i+1``: one implementation then
serves any N and, later, the multimodal triplet layout.

Unimodal layout (SCIENCE.md section 1): ``[x_1, l_1, ..., x_N, l_N, x_q]``, length 2N+1;
item i at 2i, its label at 2i+1, the query at 2N (0-indexed, i = 0..N-1).
Multimodal layout (section 4): ``[m1_1, m2_1, y_1, ..., m1_N, m2_N, y_N, m1_q, m2_q]``,
length 3N+2, read out at the M2 query (the last position).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Int

from mmicl_interp.types import TokenKind


@dataclass(frozen=True)
class Layout:
    """Positions of a sequence's parts.

    ``item_positions`` maps a modality name to the N positions of that modality's exemplar
    items (unimodal runs have one modality, ``"m1"``); ``query_positions`` maps it to its
    query position. ``label_positions`` holds the N label positions. The prediction is
    read at ``readout_position`` (the last position).
    """

    n_exemplars: int
    n_ctx: int
    item_positions: dict[str, tuple[int, ...]]
    label_positions: tuple[int, ...]
    query_positions: dict[str, int]
    readout_position: int

    @classmethod
    def unimodal(cls, n_exemplars: int) -> Layout:
        """The unimodal pair layout for N exemplars."""
        n = n_exemplars
        return cls(
            n_exemplars=n,
            n_ctx=2 * n + 1,
            item_positions={"m1": tuple(2 * i for i in range(n))},
            label_positions=tuple(2 * i + 1 for i in range(n)),
            query_positions={"m1": 2 * n},
            readout_position=2 * n,
        )

    @classmethod
    def multimodal(cls, n_exemplars: int) -> Layout:
        """The triplet layout ``[m1_1, m2_1, y_1, ..., m1_N, m2_N, y_N, m1_q, m2_q]``.

        M1 item i at 3i, M2 item at 3i+1, label at 3i+2; queries at 3N (M1) and 3N+1 (M2);
        the prediction is read at the M2 query, the last position.
        """
        n = n_exemplars
        return cls(
            n_exemplars=n,
            n_ctx=3 * n + 2,
            item_positions={"m1": tuple(3 * i for i in range(n)), "m2": tuple(3 * i + 1 for i in range(n))},
            label_positions=tuple(3 * i + 2 for i in range(n)),
            query_positions={"m1": 3 * n, "m2": 3 * n + 1},
            readout_position=3 * n + 1,
        )

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.item_positions)

    def items(self, modality: str = "m1") -> Int[torch.Tensor, " n"]:
        """Positions of the exemplar items of one modality, as a tensor."""
        return torch.tensor(self.item_positions[modality], dtype=torch.long)

    def labels(self) -> Int[torch.Tensor, " n"]:
        """Positions of the N exemplar labels, as a tensor."""
        return torch.tensor(self.label_positions, dtype=torch.long)

    def kinds(self) -> list[TokenKind]:
        """The kind of every position (item / label / query), e.g. for plot labels."""
        kinds: list[TokenKind] = ["item"] * self.n_ctx
        for p in self.label_positions:
            kinds[p] = "label"
        for p in self.query_positions.values():
            kinds[p] = "query"
        return kinds

    def positions_of(self, modality: str) -> tuple[int, ...]:
        """Every position holding a vector of ``modality`` (its items and its query)."""
        return (*self.item_positions[modality], self.query_positions[modality])

    def to_dict(self) -> dict:
        return {
            "n_exemplars": self.n_exemplars,
            "n_ctx": self.n_ctx,
            "item_positions": {k: list(v) for k, v in self.item_positions.items()},
            "label_positions": list(self.label_positions),
            "query_positions": dict(self.query_positions),
            "readout_position": self.readout_position,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Layout:
        return cls(
            n_exemplars=int(data["n_exemplars"]),
            n_ctx=int(data["n_ctx"]),
            item_positions={k: tuple(v) for k, v in data["item_positions"].items()},
            label_positions=tuple(data["label_positions"]),
            query_positions={k: int(v) for k, v in data["query_positions"].items()},
            readout_position=int(data["readout_position"]),
        )
