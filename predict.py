"""Classify the faces in photos: python predict.py ckpt_path=<ckpt> input=<file | folder | glob>  (see README.md)."""

from lanmsff.runtime.process import prepare_process

prepare_process()  # before torch is imported (libgomp reads its spin count when it loads)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from lanmsff.entrypoints import check_group_options, run_cli  # noqa: E402
from lanmsff.tasks.predict import predict  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> float | None:
    return run_cli(predict, cfg)


if __name__ == "__main__":
    check_group_options()
    main()
