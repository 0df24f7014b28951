"""Real-model scoring speed: `mmicl series` head scoring over a plain Hugging Face forward.

On the shipped checkpoint ``examples/stdlib_lm/step_8000`` (2-layer GPT-NeoX, offline), on the
series' default repeated-token prompts (32 sequences ``[bos, r_1..r_31, r_1..r_31]``, batch 8,
one thread), timed in interleaved rounds, medians:

- ``plain``: ``AutoModelForCausalLM`` forward (its default attention) on the same batches;
- ``scoring``: :func:`mmicl_interp.real.series_measures.hf_scores`, what ``mmicl series`` runs (a
  plain transformers copy with eager ``output_attentions``, the patterns reduced per batch,
  plus the copy losses);
- ``bridge_scoring``: :func:`mmicl_interp.real.series_measures.repeated_scores`, the same scores from
  the TransformerLens bridge (every layer's ``hook_pattern`` reduced in the hook), the path
  the series took before; ``bridge``: the bridge's forward without hooks;
  ``hf_eager_attentions``: plain transformers with ``output_attentions`` alone.

``real_scoring_vs_forward`` = scoring / plain (target <= 1.3).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

SERIES = Path(__file__).resolve().parents[1] / "examples" / "stdlib_lm" / "step_8000"
TARGET = 1.3


def bench_real_scoring(repeats: int = 9, n_seqs: int = 32, batch_size: int = 8) -> dict:
    """Median ms of each path over ``repeats`` interleaved rounds, and their ratios to ``plain``."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from mmicl_interp.real.load import load_model
    from mmicl_interp.real.repeated import ordinary_token_ids, repeated_tokens
    from mmicl_interp.real.series_measures import hf_scores, repeated_scores

    hf_logging.disable_progress_bar()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loaded = load_model(str(SERIES), progress=False)
        bridge, tok = loaded.bridge, loaded.tokenizer
        plain_model = AutoModelForCausalLM.from_pretrained(SERIES).eval()
        eager_model = AutoModelForCausalLM.from_pretrained(SERIES, attn_implementation="eager").eval()
        n = 31
        seqs = repeated_tokens(ordinary_token_ids(tok, len(tok)), n, n_seqs, tok.bos_token_id, 0)
        parts = [seqs[i : i + batch_size] for i in range(0, n_seqs, batch_size)]

        @torch.no_grad()
        def plain() -> None:
            for p in parts:
                plain_model(input_ids=p)

        @torch.no_grad()
        def eager() -> None:
            for p in parts:
                eager_model(input_ids=p, output_attentions=True)

        @torch.no_grad()
        def bridge_fwd() -> None:
            for p in parts:
                bridge(p)

        def scoring() -> None:
            hf_scores(eager_model, seqs, n, SERIES.name, batch_size)

        def bridge_scoring() -> None:
            repeated_scores(bridge, seqs, n, batch_size)

        fns = {
            "plain": plain,
            "scoring": scoring,
            "bridge_scoring": bridge_scoring,
            "bridge": bridge_fwd,
            "hf_eager_attentions": eager,
        }
        for fn in fns.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for key, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[key].append((time.perf_counter() - t0) * 1000)
    finally:
        torch.set_num_threads(threads)
    ms = {k: statistics.median(v) for k, v in times.items()}
    return {
        "real_scoring_vs_forward": ms["scoring"] / ms["plain"],
        "real_bridge_scoring_vs_forward": ms["bridge_scoring"] / ms["plain"],
        "real_bridge_vs_forward": ms["bridge"] / ms["plain"],
        "real_hf_eager_attentions_vs_forward": ms["hf_eager_attentions"] / ms["plain"],
        "real_plain_forward_ms": ms["plain"],
        "real_scoring_ms": ms["scoring"],
        "real_target": TARGET,
        "real_setup": (
            f"{SERIES.parent.name}/{SERIES.name}, {n_seqs} x {2 * n + 1} tokens, batch {batch_size}, 1 thread"
        ),
    }


if __name__ == "__main__":
    for key, value in bench_real_scoring().items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
