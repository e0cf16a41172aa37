"""Faces of photographs: find them, cut them out as in training, classify them; rows and annotated copies.

Every face is found with the chosen detector (``cnn``: MTCNN with five landmarks, the default;
``haar``: the data pipeline's cascades), cut out as in training (a square around the detection, grown
by the training run's ``face_margin``), rotated so that the eyes are level when ``align`` is on and
the detector gave landmarks, converted to grayscale, resized to the network's input and classified
with the optimised inference path (:func:`lanmsff.inference.optimize`), optionally averaged over
mirrored and shifted copies (:mod:`lanmsff.inference.tta`).

Images may be JPEG, PNG (grayscale, 16-bit, RGBA), BMP or WebP; EXIF orientation is applied; large
images are downscaled for detection, never rejected. Files that cannot be used (unreadable, not an
image, zero bytes, no face found) are reported with their reason.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from lanmsff.checkpoints import load_module, model_of, stored_temperature
from lanmsff.data.detectors import (
    LANDMARK_NAMES,
    BlazeFaceDetector,
    MTCNNDetector,
    blazeface_available,
    one_thread,
)
from lanmsff.data.face_geometry import VIEW_YAWS, Detection, HeadPose, head_pose
from lanmsff.data.faces import (
    DEFAULT_MARGIN,
    LEGACY_FACE_DETECTOR,
    FaceDetector,
    UnreadableImage,
    detect_downscaled,
    face_square,
    normalise_crop_mode,
    read_image,
    to_gray,
)
from lanmsff.errors import ConfigError, UserError, check_choice
from lanmsff.inference import DEFAULT_MICRO_BATCH, optimize
from lanmsff.inference.explain import attention_heatmaps, grad_cam, last_block, overlay
from lanmsff.inference.tta import TTA_MODES, VIEW_COUNTS, tta_probabilities

HAAR_MIN_FACE = 0.05  # the cascades' smallest face in photos, as a fraction of the (downscaled) width
NO_FACE = "no face found"
DEVICES = ("auto", "cpu", "cuda", "mps")
# cnn: MTCNN (five landmarks); haar: OpenCV's cascades (no landmarks); blazeface: MediaPipe's full-range BlazeFace
# and face mesh (five landmarks; also three-quarter and profile faces). docs/faces.md compares them.
DETECTORS = ("cnn", "haar", "blazeface")
# detectors whose boxes and landmarks cut faces out alike (BlazeFace's boxes are put in MTCNN's proportions)
_SAME_CROPS = {"cnn": "blazeface", "blazeface": "cnn"}


def default_detector(trained: str) -> str:
    """The detector prediction uses for a model trained on ``trained``'s crops: ``blazeface`` (every view, the
    same crops) for ``cnn`` when it is installed, else ``trained``."""
    return "blazeface" if trained == "cnn" and blazeface_available() else trained


def make_face_detector(name: str, *, detect_side: int = 800) -> FaceDetector | MTCNNDetector | BlazeFaceDetector:
    """The prediction detector called ``name`` (:data:`DETECTORS`), or a :class:`ConfigError` naming ``detector``."""
    check_choice("detector", name, DETECTORS)
    if name == "haar":
        return FaceDetector(detect_width=detect_side, min_face=HAAR_MIN_FACE)
    return MTCNNDetector() if name == "cnn" else BlazeFaceDetector()


VIEWS = tuple(VIEW_YAWS)
FRAME_THRESHOLD = 0.6  # BlazeFace's least score in video frames (MediaPipe's full-range setting; no presence rescue)


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda``, ``mps`` or ``auto`` (CUDA if present, else MPS, else the CPU) as a torch device.

    Raises :class:`ConfigError` for an unknown name or a device this machine does not have.
    """
    check_choice("device", device, DEVICES)
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if device == "auto":
        device = "cuda" if cuda else "mps" if mps else "cpu"
    if (device == "cuda" and not cuda) or (device == "mps" and not mps):
        raise ConfigError(f"device={device}: this machine has no {device.upper()} device that torch can use")
    return torch.device(device)


def check_views(views: Sequence[str] | None) -> tuple[str, ...] | None:
    """``views`` as a tuple of KDEF view codes (:data:`VIEWS`), or ``None`` (every face)."""
    if views is None:
        return None
    chosen = (views,) if isinstance(views, str) else tuple(str(v) for v in views)
    unknown = [v for v in chosen if v not in VIEWS]
    if unknown or not chosen:
        raise ConfigError(f"views={list(chosen)}: each must be one of {', '.join(VIEWS)} (null: every face)")
    return chosen


@dataclass(frozen=True)
class Preprocessing:
    """How faces are cut out: detector, eye alignment, margin, and the crop mode training used.

    ``crop`` is the training run's ``data.face_crop``: ``detect`` (faces found by ``detector``), ``box``
    (KDEF's fixed per-angle box) or ``none`` (whole images, e.g. FER-2013's face crops). Prediction always
    finds faces first; for ``box`` and ``none`` there is no stored detector, so the defaults are used.
    """

    detector: str = "cnn"
    align: bool = False
    margin: float = DEFAULT_MARGIN
    crop: str = "detect"

    @classmethod
    def of_training(cls, config: dict[str, Any] | None) -> Preprocessing:
        """What the training run's ``data`` config did (a config without the keys: the settings of old runs)."""
        data = (config or {}).get("data") or {}
        crop = normalise_crop_mode(data.get("face_crop", "detect"))
        trained = str(data.get("face_detector", LEGACY_FACE_DETECTOR))
        return cls(
            detector=trained if crop == "detect" else cls.detector,  # no detection in training: the default
            align=bool(data.get("face_align", False)),
            margin=float(data.get("face_margin", DEFAULT_MARGIN)),
            crop=crop,
        )

    def overridden(self, detector: str | None, align: bool | None, margin: float | None) -> Preprocessing:
        """These settings with those given (not ``None``) replacing them; a warning for each that differs."""
        changed = {}
        for key, value in (("detector", detector), ("align", align), ("margin", margin)):
            if value is None:
                continue
            same = key == "detector" and _SAME_CROPS.get(value) == self.detector
            if self.crop == "detect" and value != getattr(self, key) and not same:
                warnings.warn(
                    f"{key}={value} differs from the checkpoint's training ({key}={getattr(self, key)}): faces "
                    "are preprocessed unlike the training images, which can cost accuracy",
                    UserWarning,
                    stacklevel=3,
                )
            changed[key] = value
        return replace(self, **changed)


@dataclass
class Face:
    """One face: its box ``(x, y, w, h)`` in the original image, what found it, class probabilities.

    ``score`` is the detector's confidence and ``landmarks`` its five points ``(5, 2)`` (both ``None``
    for the Haar cascades); ``pose`` the head rotation and KDEF view from the landmarks (``None`` without).
    """

    box: tuple[int, int, int, int]
    detector: str
    probs: np.ndarray
    score: float | None = None
    landmarks: np.ndarray | None = None
    pose: HeadPose | None = None
    detection: Detection | None = None  # what the detector returned (to classify the same face in later frames)


@dataclass
class FileResult:
    """What happened to one input file: its faces, or the reason it produced none."""

    file: str
    faces: list[Face] = field(default_factory=list)
    problem: str | None = None


class Predictor:
    """A classifier ready for the faces of photographs and video frames.

    Args:
        model: maps float images ``(N, 1, S, S)`` in [0, 1] to logits (e.g. :func:`lanmsff.inference.optimize`).
        class_names: names of the classes, in the order of the logits.
        image_size: the side ``S`` of the network's input.
        margin: growth of a detection on every side before the crop (the training run's ``face_margin``).
        detector: ``cnn`` (MTCNN, landmarks), ``haar`` (OpenCV cascades) or ``blazeface`` (BlazeFace and
            the face mesh, landmarks; :data:`DETECTORS`).
        align: rotate faces so that the eyes are level (when the detector gives landmarks).
        tta: ``none``, ``flip`` or ``flip_shift`` (:mod:`lanmsff.inference.tta`).
        detect_side: images are downscaled so that their longer side is at most this for detection.
        min_face: smallest face searched for, in pixels of the downscaled image (``None``: 20 for the
            CNN, 5% of the width for the cascades).
        temperature: logits are divided by it before the softmax (``calibrate=temperature`` of training;
            ``None``: uncalibrated probabilities).
        views: keep only faces whose nearest KDEF view (from the landmarks' head pose) is one of these
            (``None``: every face, also those without landmarks).
        device: where the crops go (the device of ``model``).
        net: the plain network behind ``model`` (eval mode), for :meth:`explain`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        class_names: Sequence[str],
        image_size: int,
        *,
        margin: float = DEFAULT_MARGIN,
        detector: str = "cnn",
        align: bool = True,
        tta: str = "none",
        detect_side: int = 800,
        min_face: float | None = None,
        temperature: float | None = None,
        views: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
        net: torch.nn.Module | None = None,
    ) -> None:
        check_choice("tta", tta, TTA_MODES)
        if min_face is not None and min_face < 12:
            raise ConfigError(f"min_face={min_face} is in pixels and must be at least 12 (null: the detector's own)")
        if detect_side < 64:
            raise ConfigError(f"detect_side={detect_side} must be at least 64 pixels")
        if temperature is not None and not temperature > 0:
            raise ConfigError(f"temperature={temperature} must be positive")
        self.model, self.class_names, self.image_size = model, list(class_names), int(image_size)
        self.margin, self.align, self.tta = float(margin), bool(align), tta
        self.detect_side, self.min_face = int(detect_side), min_face
        self.temperature, self.views, self.device = temperature, check_views(views), torch.device(device)
        self.detector_name, self.net = detector, net
        self.detector = make_face_detector(detector, detect_side=detect_side)
        # video frames: BlazeFace on the whole frame only (tiles find small faces in photos, at several times the
        # cost), and only confident faces: the mesh's presence check, which rescues low-scoring faces in photos,
        # also let through title letters in the frames of a face-free clip (docs/faces.md, "Recall on public photos")
        self.frame_detector = (
            BlazeFaceDetector(tile_side=None, threshold=FRAME_THRESHOLD) if detector == "blazeface" else self.detector
        )

    @property
    def calibration(self) -> str:
        """What the probabilities are: ``temperature=<T>`` (scaled as calibrated on validation) or ``none``."""
        return "none" if self.temperature is None else f"temperature={self.temperature:g}"

    @classmethod
    def from_checkpoint(
        cls,
        ckpt_path: str | Path,
        *,
        precision: str = "auto",
        backend: str = "eager",
        expect_classes: int | None = None,
        device: str = "auto",
        batch_size: int | None = None,
        detector: str | None = None,
        align: bool | None = None,
        margin: float | None = None,
        calibrate: bool = True,
        **options: Any,
    ) -> Predictor:
        """A predictor for a checkpoint written by ``train.py``, preprocessing faces as its training did.

        Detector, alignment and margin come from the training run's ``data`` config stored in the checkpoint
        (:class:`Preprocessing`); ``detector``, ``align`` and ``margin`` override them, with a warning when they
        differ. A model trained on MTCNN's crops gets ``blazeface`` when it is installed (:func:`default_detector`):
        it finds faces at every view and cuts them out as MTCNN does. The temperature of
        ``calibrate=temperature`` (:func:`lanmsff.checkpoints.stored_temperature`) scales the logits unless
        ``calibrate=False``.

        Args:
            precision, backend: those of :func:`lanmsff.inference.optimize`.
            expect_classes: fail unless the checkpoint has this many classes.
            device: ``auto`` (CUDA, else MPS, else CPU), ``cpu``, ``cuda`` or ``mps`` (MPS is untested).
            batch_size: most face crops per forward pass (``None``: 16 on a CPU, 256 on a GPU).
            options: the other arguments of :class:`Predictor`.
        """
        module, checkpoint = load_module(ckpt_path)
        net, class_names, image_size, config = model_of(module, checkpoint)
        if expect_classes is not None and len(class_names) != expect_classes:
            raise UserError(
                f"ckpt_path={ckpt_path} classifies {len(class_names)} classes ({', '.join(class_names)}), "
                f"not expect_classes={expect_classes}"
            )
        if batch_size is not None and (type(batch_size) is not int or batch_size < 1):
            raise ConfigError(f"batch_size={batch_size!r} must be a positive integer (null: the device's default)")
        where = resolve_device(device)
        batch_size = batch_size or (DEFAULT_MICRO_BATCH if where.type == "cpu" else 256)
        trained = Preprocessing.of_training(config)
        prep = trained.overridden(detector, align, margin)
        if detector is None:
            prep = replace(prep, detector=default_detector(trained.detector))
        model = optimize(net.to(where), precision=precision, backend=backend, micro_batch=batch_size)
        temperature = stored_temperature(checkpoint, ckpt_path) if calibrate else None
        return cls(
            model,
            class_names,
            image_size,
            margin=prep.margin,
            detector=prep.detector,
            align=prep.align,
            temperature=temperature,
            device=where,
            net=net,
            **options,
        )

    def detect(self, image: np.ndarray, *, frame: bool = False) -> list[Detection]:
        """Faces of an image (gray or BGR, any size) in its own coordinates, left to right.

        ``frame``: a video frame, searched whole (BlazeFace without tiles).
        """
        scale = min(1.0, self.detect_side / max(image.shape[:2]))
        detector = self.frame_detector if frame else self.detector
        return detect_downscaled(detector, image, scale, min_face=self.min_face)

    def crops(self, gray: np.ndarray, detections: Sequence[Detection]) -> torch.Tensor:
        """The network's input ``(N, 1, S, S)`` for the faces at ``detections`` (aligned if asked)."""
        size = (self.image_size, self.image_size)
        faces = [
            face_square(gray, d.box, self.margin, landmarks=d.landmarks if self.align else None) for d in detections
        ]
        stacked = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in faces])
        return torch.from_numpy(stacked).to(self.device).float().div_(255.0).unsqueeze(1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The network's logits of crops ``x``, divided by the temperature when there is one."""
        out = self.model(x)
        return out if self.temperature is None else out / self.temperature

    @torch.inference_mode()
    def classify(self, gray: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """Class probabilities ``(len(detections), num_classes)`` of the faces at ``detections``.

        A batch of at most one micro-batch (a few faces) runs on one thread: for so little work the
        threads mostly wait on each other, and on a busy machine a second thread made it 10x slower.
        """
        if not detections:
            return np.zeros((0, len(self.class_names)), np.float32)
        small = len(detections) * VIEW_COUNTS[self.tta] <= DEFAULT_MICRO_BATCH
        with one_thread() if small else contextlib.nullcontext():
            return tta_probabilities(self.logits, self.crops(gray, detections), self.tta).cpu().numpy()

    def faces(
        self, image: np.ndarray, *, frame: bool = False, detections: Sequence[Detection] | None = None
    ) -> list[Face]:
        """Every face of an image (gray or BGR), found, its head pose estimated, and classified.

        ``frame``: a video frame (:meth:`detect`); ``detections``: classify the faces at these (e.g. those of an
        earlier frame) instead of searching. With :attr:`views` set, only faces whose nearest KDEF view is among
        them are classified and returned.
        """
        if detections is None:
            detections = self.detect(image, frame=frame)
        found = [(d, None if d.landmarks is None else head_pose(d.landmarks)) for d in detections]
        if self.views is not None:
            found = [(d, pose) for d, pose in found if pose is not None and pose.view in self.views]
        probs = self.classify(to_gray(image), [d for d, _ in found])
        return [
            Face(d.box, d.method, p, d.score, d.landmarks, pose, d) for (d, pose), p in zip(found, probs, strict=True)
        ]

    def explain(self, image: np.ndarray, faces: Sequence[Face]) -> list[np.ndarray]:
        """Per face, a BGR image: the crop, MassAtt's spatial attention over it (when the network has MassAtt
        blocks) and Grad-CAM of the network's last block for the predicted class, side by side
        (:mod:`lanmsff.inference.explain`). Needs the plain network (``net``; :meth:`from_checkpoint` keeps it)."""
        if self.net is None:
            raise ConfigError("explain needs the plain network: make the predictor with Predictor.from_checkpoint")
        if not faces:
            return []
        x = self.crops(to_gray(image), [face.detection or Detection(face.box, None, None) for face in faces])
        try:
            attention = attention_heatmaps(self.net, x)
        except ValueError:  # a baseline without MassAtt: Grad-CAM only
            attention = None
        cams = grad_cam(self.net, last_block(self.net), x)
        crops = (x[:, 0].cpu().numpy() * 255).round().astype(np.uint8)
        panels = []
        for i, crop in enumerate(crops):
            row = [overlay(crop, np.zeros_like(cams[i]), alpha=0.0)]
            row += [] if attention is None else [overlay(crop, attention[i])]
            panels.append(np.hstack([*row, overlay(crop, cams[i])]))
        return panels

    def predict_file(self, path: Path) -> tuple[FileResult, np.ndarray | None]:
        """Faces of one image file, and the decoded colour image (for annotation) when it could be read."""
        try:
            image = read_image(path, color=True)
        except UnreadableImage as err:
            return FileResult(str(path), problem=str(err)), None
        faces = self.faces(image)
        return FileResult(str(path), faces=faces, problem=None if faces else NO_FACE), image


def draw_face(image: np.ndarray, face: Face, label: str, *, color: tuple[int, int, int] = (0, 220, 0)) -> None:
    """Draw a face's box, landmarks and ``label`` onto ``image`` (BGR, in place)."""
    x, y, w, h = face.box
    thickness = max(2, round(max(image.shape[:2]) / 400))
    cv2.rectangle(image, (x, y), (x + w, y + h), color, thickness)
    if face.landmarks is not None:
        for px, py in face.landmarks:
            cv2.circle(image, (round(float(px)), round(float(py))), thickness + 1, (0, 200, 255), -1)
    scale = thickness / 3
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = max(y - th - 2 * thickness, 0)
    cv2.rectangle(image, (x, top), (x + tw + 2 * thickness, top + th + 2 * thickness), color, -1)
    cv2.putText(
        image, label, (x + thickness, top + th + thickness), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness
    )


def face_label(probs: np.ndarray, class_names: Sequence[str]) -> str:
    """``expression probability`` of the most probable class."""
    best = int(probs.argmax())
    return f"{class_names[best]} {probs[best]:.2f}"


def annotate(image: np.ndarray, faces: Sequence[Face], class_names: Sequence[str]) -> np.ndarray:
    """A copy of ``image`` with a box, landmarks and ``label probability`` drawn for every face."""
    out = image.copy()
    for face in faces:
        draw_face(out, face, face_label(face.probs, class_names))
    return out


def face_columns(face: Face, class_names: Sequence[str]) -> dict[str, Any]:
    """Box, detector, score, landmarks and class probabilities of one face, as output columns."""
    x, y, w, h = face.box
    marks: dict[str, Any] = {}
    for name, point in zip(LANDMARK_NAMES, [None] * 5 if face.landmarks is None else face.landmarks, strict=True):
        marks[f"{name}_x"] = None if point is None else round(float(point[0]), 1)
        marks[f"{name}_y"] = None if point is None else round(float(point[1]), 1)
    pose = face.pose
    return {
        "x": x,
        "y": y,
        "w": w,
        "h": h,
        "detector": face.detector,
        "score": None if face.score is None else round(float(face.score), 4),
        **marks,
        "yaw": None if pose is None else pose.yaw,
        "roll": None if pose is None else pose.roll,
        "view": None if pose is None else pose.view,
        "view_p": None if pose is None else pose.view_p,
        **probability_columns("p_", face.probs, class_names),
    }


def probability_columns(prefix: str, probs: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """``{prefix + class: probability}`` rounded to 6 digits."""
    return {f"{prefix}{name}": round(float(p), 6) for name, p in zip(class_names, probs, strict=True)}


def result_rows(result: FileResult, class_names: Sequence[str], *, calibration: str = "none") -> list[dict[str, Any]]:
    """Rows for the CSV / JSON lines output: one per face, or one with the problem.

    ``calibration`` says how the probabilities were scaled (:attr:`Predictor.calibration`).
    """
    if result.problem is not None:
        return [{"file": result.file, "face": None, "problem": result.problem}]
    rows = []
    for i, face in enumerate(result.faces):
        best = int(face.probs.argmax())
        columns = face_columns(face, class_names)
        rows.append(
            {
                "file": result.file,
                "face": i,
                **columns,
                "expression": class_names[best],
                "probability": round(float(face.probs[best]), 6),
                "calibration": calibration,
                "problem": None,
            }
        )
    return rows
