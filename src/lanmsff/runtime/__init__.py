"""The bottom layer: what the hardware can do (CPU features, bf16), process tuning and precision choices.

Everything in the package may import from here; nothing here imports the rest of the package.
"""
