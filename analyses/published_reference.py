"""A rerunnable reference of the paper's published research code: stage-1 trajectories.

What it does. It imports the published ``model.py`` and ``dataset.py`` from a local checkout
that you supply (``--code DIR``; github: YiranHuangIrene/multimodal-icl, commit
``5e9cd68954443a7ba8b9c67b772353c7f90a5b42``), and trains the published stage-1 model the way
the published ``main_stage1.py`` does for the given settings: its ``Transformer`` built from its
``ModelArgs``, its class means and label vectors (``get_mus_label_class``), its online batches
(``ICLDataset``), its four eval sets drawn once (``generate_input_seqs``: test, IC = ``icl``,
IC2 = ``icl_flip``, IW = ``iwl``), Adam lr 1e-3 with weight decay 1e-6 (both hard-coded there),
cross-entropy at the query. None of the published code is copied here: it is imported at run
time from DIR, and DIR must hold the pinned commit (``git rev-parse HEAD`` when DIR is a git
checkout, and always the SHA-256 of ``model.py`` and ``dataset.py``; ``--allow-other-commit``
overrides, and the manifest records it). The published modules import ``wandb`` and
``torchvision`` at top level (``dataset.py`` imports torchvision's image sets); when they are not
importable, inert stand-ins are put in ``sys.modules`` for the import. Nothing is installed and
nothing touches the network.

Why. The toolkit's ``published`` config must reproduce these trajectories: claims P1/P2
(``analyses/paper_arch.py``) compare the toolkit's model against this table like for like (same
metrics format, same step convention, same eval-suite sizes), on this machine, rerunnable by
anyone with a checkout of the published code.

Seeds and the data stream. The published script sets ``torch.manual_seed(SEED)`` and
``np.random.seed(SEED)`` with ``SEED = 0`` hard-coded; ``--seeds`` replaces that constant, one
run per seed, in the same order of random draws: model init (torch), task (numpy), the four
eval sets (numpy). Its batches come from one DataLoader worker process whose numpy generator
torch seeds from a base seed drawn from the main torch generator when the loader is first
iterated. Here the same base seed is drawn and numpy is seeded the way the worker seeds it,
then the same ``ICLDataset`` runs in this process: the same batches, with no second process
(``tests/test_published_reference.py`` checks the stream against a real one-worker loader).

One torch thread and one process: this machine has 2 cores shared with other heavy jobs, so a
second worker process or thread only competes with them; and with one thread the CPU's float
reductions are always split the same way, so a rerun gives the same numbers bit for bit. The
device is always the CPU (the published script falls back to it silently too).

Steps. ``step`` s in the metrics is the state after s Adam updates (the toolkit's convention;
step 0 is the initialisation). The published loop evaluates after each update, so its
"Iteration n" is step n + 1 here. Evals run at step 0, every ``--eval-every`` steps and at the
last step; evaluating draws no random numbers, so it does not change the training trajectory.

Output. One run folder per (K, seed) under ``--out`` (``K<K>_seed<seed>``), each with
``metrics.jsonl`` (rows ``{"step", "suite", "accuracy", "loss", "chance"}``, the toolkit's
format; suites test / icl / icl_flip / iwl) and ``manifest.json`` (settings, seed, the code's
commit and hashes, torch version, command line, wall time, status). Every write is atomic. A
run folder whose manifest says complete with the same settings and code is reused, an
unfinished one is trained again from the start, and a finished one with other settings is
refused (exit 2), never overwritten. After each run the summary table
``published_reference.csv`` (K, seed, step, suite, accuracy, loss; every eval step) and
``published_reference.md`` are rewritten under ``--results``: rows of runs not in this command
are kept, rows of this command's runs replaced.

Bad input (a missing folder, another commit, K not a multiple of L, steps < 1, ...) is one line
naming the option and the allowed values, exit status 2.

Checked against the published script itself (2026-12-04): ``main_stage1.py`` run as it is
(torchvision stubbed, wandb disabled, one thread) at K 2048 with SEED 0 prints, at its
Iterations 0 and 1000, the same test / IC / IC2 / IW accuracies and losses, to all 4 printed
decimals, as this script's steps 1 and 1001.

The reference (6 runs of 2000 steps, 104-116 s each on one core of a 2-core CPU):

    .venv/bin/python analyses/published_reference.py --code /path/to/multimodal-icl \\
        --K 2048 4096 --seeds 0 1 2 --steps 2000 --eval-every 100
"""

from __future__ import annotations

import sys

# the command is mmicl_interp.sweep.published_run; the tests use these names here
from mmicl_interp.sweep.published_code import PINNED_COMMIT, batch_stream  # noqa: F401
from mmicl_interp.sweep.published_run import build_parser, main, run, settings_of, validate  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
