"""Heat maps over faces, without torch: :func:`overlay` draws one over a gray crop, and the per-view record
of a test set's mean attention (``attention/per_view.npz``, :class:`PerViewAttention`) is read, pooled over
runs (:func:`pooled`) and drawn (:func:`per_view_figure`) here.

The maps come from :mod:`lanmsff.inference.explain` (per face) and
:mod:`lanmsff.inference.attention_maps` (the test-time callback that writes the record); the comparison
report reads the record without loading torch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np

from lanmsff.plots import save_figure
from lanmsff.utils.io import atomic_write

log = logging.getLogger(__name__)

ATTENTION_DIR = "attention"
NPZ_FILE = f"{ATTENTION_DIR}/per_view.npz"
PNG_FILE = f"{ATTENTION_DIR}/per_view.png"
NO_GROUPS = "all"


def overlay(gray: np.ndarray, heat: np.ndarray, *, alpha: float = 0.45, side: int = 192) -> np.ndarray:
    """A BGR image ``side`` x ``side``: the gray crop with ``heat`` (in [0, 1]) blended over it as a jet colour map."""
    face = cv2.cvtColor(cv2.resize(gray, (side, side), interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2BGR)
    colours = cv2.applyColorMap((np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colours = cv2.resize(colours, (side, side), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(face, 1 - alpha, colours, alpha, 0)


@dataclass
class PerViewAttention:
    """Mean maps per view of one test set (or of several runs, :func:`pooled`); arrays are ``(V, S, S)``."""

    views: list[str]
    counts: np.ndarray  # (V,) test images per view
    attention: np.ndarray  # mean MassAtt spatial heat map, in [0, 1]
    faces: np.ndarray  # mean input image (channels averaged), in [0, 1]
    grad_cam: np.ndarray | None = None  # mean Grad-CAM of the last block, in [0, 1]

    def save(self, path: str | Path) -> Path:
        """Write the maps as an ``.npz`` file, atomically."""
        arrays = {
            "views": np.array(self.views, dtype=str),
            "counts": self.counts.astype(np.int64),
            "attention": self.attention.astype(np.float32),
            "faces": self.faces.astype(np.float32),
        }
        if self.grad_cam is not None:
            arrays["grad_cam"] = self.grad_cam.astype(np.float32)
        return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))

    @classmethod
    def load(cls, path: str | Path) -> PerViewAttention:
        """Read a file :meth:`save` wrote."""
        with np.load(path, allow_pickle=False) as data:
            return cls(
                views=[str(v) for v in data["views"]],
                counts=data["counts"],
                attention=data["attention"],
                faces=data["faces"],
                grad_cam=data.get("grad_cam"),
            )


def write_per_view(result: PerViewAttention, run_dir: str | Path) -> Path:
    """``attention/per_view.npz`` and ``attention/per_view.png`` in ``run_dir``; returns the npz path."""
    run_dir = Path(run_dir)
    path = result.save(run_dir / NPZ_FILE)
    save_figure(per_view_figure({"": result}, title="Mean over the test set per view"), run_dir / PNG_FILE)
    shown = ", ".join(f"{v} {n}" for v, n in zip(result.views, result.counts.tolist(), strict=True))
    log.info("Attention per view (%s images) written to %s", shown, path.parent)
    return path


def _resized(maps: np.ndarray, size: int) -> np.ndarray:
    if maps.shape[-1] == size:
        return maps
    return np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) for m in maps])


def pooled(results: Sequence[PerViewAttention]) -> PerViewAttention | None:
    """Several runs' maps as one: per view the mean over all their test images (each run weighted by its
    count of that view), maps resized to the first run's size; views in the order they first appear."""
    if not results:
        return None
    size = results[0].attention.shape[-1]
    views = list(dict.fromkeys(v for r in results for v in r.views))
    counts = np.zeros(len(views), np.int64)
    sums = {name: np.zeros((len(views), size, size)) for name in ("attention", "faces", "grad_cam")}
    with_cam = all(r.grad_cam is not None for r in results)
    for r in results:
        for j, view in enumerate(r.views):
            i = views.index(view)
            counts[i] += r.counts[j]
            for name in sums if with_cam else ("attention", "faces"):
                sums[name][i] += r.counts[j] * _resized(getattr(r, name), size)[j]
    means = {name: s / np.maximum(counts, 1)[:, None, None] for name, s in sums.items()}
    return PerViewAttention(views, counts, means["attention"], means["faces"], means["grad_cam"] if with_cam else None)


def _gray(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def _stretched(heat: np.ndarray) -> np.ndarray:
    """``heat`` mapped linearly from its own [min, max] to [0, 1] (a flat map stays 0)."""
    low, high = float(heat.min()), float(heat.max())
    return (heat - low) / (high - low) if high > low else np.zeros_like(heat)


def per_view_figure(entries: Mapping[str, PerViewAttention], *, title: str, side: int = 128) -> plt.Figure:
    """A column per view: the mean face of the first entry, then per entry its mean attention (and Grad-CAM
    where it has one) over its own mean face. Each mean map is stretched from its own minimum (blue) to its
    maximum (red), both written under it, so colours compare places within one view, not views; the count of
    images of the view is under each entry's last row."""
    first = next(iter(entries.values()))
    views = list(dict.fromkeys(v for e in entries.values() for v in e.views))
    rows: list[tuple[str, PerViewAttention, str | None]] = [("mean face", first, None)]
    for label, entry in entries.items():
        rows.append((f"{label}\nattention" if label else "attention", entry, "attention"))
        if entry.grad_cam is not None:
            rows.append((f"{label}\nGrad-CAM" if label else "Grad-CAM", entry, "grad_cam"))
    fig, axes = plt.subplots(
        len(rows), len(views), figsize=(1.6 * len(views) + 0.6, 1.6 * len(rows) + 0.6), squeeze=False
    )
    for r, (label, entry, kind) in enumerate(rows):
        for c, view in enumerate(views):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if view not in entry.views:
                ax.set_frame_on(False)
                continue
            i = entry.views.index(view)
            face = _gray(entry.faces[i])
            if kind is None:
                image = cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR)
                ax.imshow(image, cmap="gray", vmin=0, vmax=255)
            else:
                heat = getattr(entry, kind)[i]
                shown = cv2.resize(_stretched(heat).astype(np.float32), face.shape[::-1])
                ax.imshow(cv2.cvtColor(overlay(face, shown, side=side), cv2.COLOR_BGR2RGB))
                count = f"n={int(entry.counts[i])}, " if r == len(rows) - 1 or rows[r + 1][1] is not entry else ""
                ax.set_xlabel(f"{count}{heat.min():.3f}–{heat.max():.3f}", fontsize=7)
            if r == 0:
                ax.set_title(view, fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
