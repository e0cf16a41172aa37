"""Export a checkpoint to ONNX: python export.py ckpt_path=<run>/checkpoints/<file>.ckpt  (see README.md)."""

from lanmsff.runtime.process import prepare_process

prepare_process()  # before torch is imported (libgomp reads its spin count when it loads)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from lanmsff.entrypoints import check_group_options, run_cli  # noqa: E402
from lanmsff.tasks.export import exit_status, export_task  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    run_cli(export_task, cfg, exit_status=exit_status)


if __name__ == "__main__":
    check_group_options()
    main()
