"""Train a model: python train.py model=lanmsff data=kdef [key=value ...]  (see README.md)."""

import hydra
from omegaconf import DictConfig

from lanmsff.entrypoints import check_group_options, run_cli
from lanmsff.tasks.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_cli(train, cfg)


if __name__ == "__main__":
    check_group_options()
    main()
