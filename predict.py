"""Classify faces in photos, videos or a webcam: python predict.py ckpt_path=<ckpt> input=<path>  (lanmsff-predict)."""

from lanmsff.cli import predict

if __name__ == "__main__":
    predict()
