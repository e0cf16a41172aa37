"""Export a checkpoint to ONNX: python export.py ckpt_path=<run>/checkpoints/<file>.ckpt  (lanmsff-export)."""

from lanmsff.cli import export

if __name__ == "__main__":
    export()
