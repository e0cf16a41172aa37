"""Evaluate a checkpoint: python eval.py ckpt_path=<run>/checkpoints/<file>.ckpt  (see README.md)."""

import hydra
from omegaconf import DictConfig

from lanmsff.entrypoints import check_group_options, run_cli
from lanmsff.tasks.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return run_cli(evaluate, cfg)


if __name__ == "__main__":
    check_group_options()
    main()
