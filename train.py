"""Train a model: python train.py model=lanmsff data=kdef [key=value ...]  (lanmsff-train)."""

from lanmsff.cli import train

if __name__ == "__main__":
    train()
