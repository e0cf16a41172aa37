"""Classify the faces in photos: python predict.py ckpt_path=<ckpt> input=<file | folder | glob>  (see README.md)."""

import hydra
from omegaconf import DictConfig

from lanmsff.entrypoints import check_group_options, run_cli
from lanmsff.tasks.predict import predict


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> float | None:
    return run_cli(predict, cfg)


if __name__ == "__main__":
    check_group_options()
    main()
