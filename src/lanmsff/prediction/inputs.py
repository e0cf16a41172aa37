"""What ``input=`` names: image and video files (a file, a folder searched recursively, a glob) or a webcam."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from lanmsff.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")


def find_inputs(spec: str | Path) -> list[Path]:
    """The files named by ``spec``: a file, a folder (recursively, symlinked folders not followed) or a glob."""
    path = Path(spec).expanduser()
    if path.is_dir():
        found = []
        for folder, dirs, files in os.walk(path, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(folder) / f for f in sorted(files) if not f.startswith(".")]
        return found
    if path.exists() or path.is_symlink():
        return [path]
    matches = sorted(Path(p) for p in glob.glob(str(spec), recursive=True))
    files = [p for p in matches if not p.is_dir()]
    if not files:
        raise UserError(f"input={spec}: no such file or folder, and no file matches it as a pattern")
    return files


def is_video(path: str | Path) -> bool:
    """Whether ``path`` is read as a video (by its suffix, :data:`VIDEO_SUFFIXES`); everything else is an image."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def webcam_index(spec: object) -> int | None:
    """The camera index when ``input=`` is a number (``input=0``) that names no file, else ``None``."""
    if isinstance(spec, bool):
        return None
    text = str(spec).strip()
    return int(text) if text.isdigit() and not Path(text).exists() else None
