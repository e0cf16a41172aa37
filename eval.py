"""Evaluate a checkpoint: python eval.py ckpt_path=<run>/checkpoints/<file>.ckpt  (lanmsff-eval)."""

from lanmsff.cli import evaluate

if __name__ == "__main__":
    evaluate()
