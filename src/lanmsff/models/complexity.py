"""Parameters and FLOPs per block of any model config.

    python -m lanmsff.models.complexity model=lanmsff
    python -m lanmsff.models.complexity model=resnet18 data.image_size=96 --num-classes 8

Arguments are Hydra overrides of ``lanmsff/conf/train.yaml``; FLOPs come from ``torch.utils.flop_counter``
(a multiply-add is two FLOPs) for one image.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table
from torch import nn

from lanmsff.errors import EXIT_USER_ERROR, UserError
from lanmsff.models.introspection import count_flops, count_params, model_size_mb
from lanmsff.utils.config import CONF_DIR, config_group_options, instantiate


@dataclass(frozen=True)
class Row:
    name: str
    params: int
    flops: int


def conf_dir() -> Path:
    """The project's ``lanmsff/conf/`` (see :data:`lanmsff.utils.config.CONF_DIR`), or :class:`UserError`."""
    if not (CONF_DIR / "train.yaml").is_file():
        raise UserError(
            f"cannot find the project's configs in {CONF_DIR}; reinstall lanmsff, "
            "or set LANMSFF_CONF to a folder holding train.yaml"
        )
    return CONF_DIR


def _rows_of(model: nn.Module, flops: dict[str, int], prefix: str, depth: int) -> list[Row]:
    rows = []
    for name, child in model.named_children():
        path = f"{prefix}.{name}"
        expand = depth > 0 and isinstance(child, nn.ModuleList | nn.ModuleDict) and len(child) > 1
        if expand:
            rows += _rows_of(child, flops, path, depth - 1)
        else:
            label = path.split(".", 1)[1]
            rows.append(Row(label, count_params(child), flops.get(path, 0)))
    return rows


def block_rows(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[list[Row], int]:
    """One row per top-level block (lists of blocks expanded one level), and the total FLOPs."""
    total, flops = count_flops(model, input_shape, per_module=True)
    return _rows_of(model, flops, type(model).__name__, depth=1), total


def build_from_overrides(overrides: list[str], num_classes: int) -> tuple[nn.Module, str, int]:
    conf = conf_dir()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
    except HydraException as err:
        choices = ", ".join(config_group_options("model", conf))
        raise UserError(f"{str(err).splitlines()[0]}; available models: {choices}") from None
    image_size = int(OmegaConf.select(cfg, "data.image_size", default=64))
    net = instantiate(cfg.model.net, num_classes=num_classes, in_channels=1, image_size=image_size)
    return net, str(cfg.model.get("name", "model")), image_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lanmsff.models.complexity", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=lanmsff_fuse_4")
    parser.add_argument("--num-classes", type=int, default=7)
    args = parser.parse_args(argv)
    try:
        net, name, size = build_from_overrides(args.overrides, args.num_classes)
    except (UserError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    rows, total = block_rows(net, (1, size, size))
    table = Table(title=f"{name}: 1x{size}x{size} input, {args.num_classes} classes")
    for column in ("block", "params", "GFLOPs", "share"):
        table.add_column(column, justify="left" if column == "block" else "right")
    for row in rows:
        table.add_row(row.name, f"{row.params:,}", f"{row.flops / 1e9:.4f}", f"{row.flops / max(total, 1):.1%}")
    table.add_row("total", f"{count_params(net):,}", f"{total / 1e9:.4f}", "100.0%", style="bold")
    console = Console()
    console.print(table)
    console.print(f"size {model_size_mb(net):.2f} MiB (parameters and buffers, float32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
