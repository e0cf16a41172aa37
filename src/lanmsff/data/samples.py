"""Sample inputs: synthetic KDEF-style faces exactly as the network sees them, for checks and benchmarks."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from lanmsff.data.faces import face_crop
from lanmsff.data.kdef_names import ANGLES, EXPRESSIONS, GENDERS, SESSIONS, KDEFName
from lanmsff.data.synthetic import render_face


def sample_faces(n: int, image_size: int = 64, *, in_channels: int = 1, seed: int = 0) -> torch.Tensor:
    """``n`` synthetic KDEF-style faces as the network sees them: ``(n, C, S, S)`` float32 in [0, 1].

    Faces are drawn by :func:`lanmsff.data.synthetic.render_face` (people, sessions, expressions and
    angles cycled: face ``i`` has expression ``i % 7``), cropped with the fixed KDEF box, converted to
    grayscale and resized like the training data; for checks and benchmarks that need realistic
    rather than uniform-noise input.
    """
    faces = []
    for i in range(n):
        people = (SESSIONS[i % 2], GENDERS[(i // 2) % 2], 1 + (i // 4) % 35)
        name = KDEFName(*people, EXPRESSIONS[i % 7], ANGLES[i % 5])
        gray = cv2.cvtColor(render_face(name, seed), cv2.COLOR_RGB2GRAY)
        face, _ = face_crop(gray, name.angle, "box")
        faces.append(cv2.resize(face, (image_size, image_size), interpolation=cv2.INTER_AREA))
    x = torch.from_numpy(np.stack(faces)).float().div_(255.0).unsqueeze(1)
    return x.expand(-1, in_channels, -1, -1).contiguous()
