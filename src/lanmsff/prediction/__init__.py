"""Run a trained model on people's own photos, videos and webcams (``predict.py``).

* :mod:`~lanmsff.prediction.inputs`: what ``input=`` names (files, folders, globs, a webcam index);
* :mod:`~lanmsff.prediction.photos`: :class:`Predictor` (detect, align, crop, classify, TTA), rows, annotation;
* :mod:`~lanmsff.prediction.tracking`: face identities across frames (IoU) and smoothing over time;
* :mod:`~lanmsff.prediction.video`: decoding, per-frame rows, the annotated MP4, per-file problems;
* :mod:`~lanmsff.prediction.pipeline`: one run over all inputs, the output files and counts.
"""

from lanmsff.data.faces import HAAR_METHODS as DETECTORS
from lanmsff.data.faces import merge_detections
from lanmsff.prediction.inputs import VIDEO_SUFFIXES, find_inputs, is_video, webcam_index
from lanmsff.prediction.photos import Face, FileResult, Predictor, annotate, result_rows
from lanmsff.prediction.pipeline import RunOptions, predict_inputs, write_outputs
from lanmsff.prediction.tracking import IoUTracker, Track, iou
from lanmsff.prediction.video import VideoOptions, VideoProblem, VideoReader, VideoResult, predict_video

__all__ = [
    "DETECTORS",
    "VIDEO_SUFFIXES",
    "Face",
    "FileResult",
    "IoUTracker",
    "Predictor",
    "RunOptions",
    "Track",
    "VideoOptions",
    "VideoProblem",
    "VideoReader",
    "VideoResult",
    "annotate",
    "find_inputs",
    "iou",
    "is_video",
    "merge_detections",
    "predict_inputs",
    "predict_video",
    "result_rows",
    "webcam_index",
    "write_outputs",
]
