"""Training: online batches, eval suites, checkpoint schedules, resumable runs."""

from mmicl_interp.train.evaluate import evaluate_suites
from mmicl_interp.train.schedule import checkpoint_steps, eval_steps
from mmicl_interp.train.trainer import TrainResult, make_optimizer, train

__all__ = ["TrainResult", "checkpoint_steps", "eval_steps", "evaluate_suites", "make_optimizer", "train"]
