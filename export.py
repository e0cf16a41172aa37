"""Export a checkpoint to ONNX: python export.py ckpt_path=<run>/checkpoints/<file>.ckpt  (see README.md)."""

import sys

import hydra
from omegaconf import DictConfig

from lanmsff.cli import check_group_options
from lanmsff.export import main as export_main


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    sys.exit(export_main(cfg))


if __name__ == "__main__":
    check_group_options()
    main()
