"""The peer: the authors' Keras/TensorFlow LANMSFF timed next to ours, in the same benchmark run.

TensorFlow is not a dependency of the project; ``make bench-peer`` puts it in a venv of its own,
``.venv-peer``. This module has two halves that share one timing function, :func:`time_calls`:

* **the measuring side** runs under that venv's python and imports only numpy, tensorflow/keras and
  ``tests/fixtures/keras/keras_model.py`` by path (the authors' architecture, the code that
  ``tests/fixtures/keras/make_reference.py`` builds the weight fixture with). Inference is
  ``tf.function(model(x, training=False))``; the training step is a ``tf.GradientTape`` step under
  ``tf.function`` with the authors' settings: softmax output, categorical cross-entropy, Adam
  (lr 1e-3, epsilon 1e-7). TensorFlow's intra-op and inter-op thread pools are set to ``--threads``
  and ``--inter-op-threads`` before the first op runs, and reported back as TensorFlow sees them.
  Standalone::

      .venv-peer/bin/python -m benchmarks.peer --threads 2 --batch 64 --train-batch 64,32

  (run from the repository root, or with it on ``PYTHONPATH``) prints one JSON object. With ``--serve``
  it answers requests, one JSON line each on stdin and stdout, so the benchmark can interleave TF's
  measurements with its own (the process idles while ours run).

* **the launching side** (:class:`PeerProcess`, :func:`find_peer_python`) runs in the project's venv
  and imports nothing but the standard library.

Both sides time with :func:`time_calls`: ``warmup`` calls, then calls until ``seconds`` have passed
(at least ``min_calls``), each call timed on its own; the median is reported, together with the
process's CPU time over wall time during the timed calls (how many cores the path kept busy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

NUM_CLASSES = 7
IMAGE_SHAPE = (64, 64, 1)  # NHWC, as the authors feed Keras
PEER_VENV = ".venv-peer"
PEER_ENV = "LANMSFF_PEER_PYTHON"
CHECKOUT = Path(__file__).resolve().parents[1]  # the repository root: benchmarks/ and tests/ are in it
KERAS_MODEL = CHECKOUT / "tests" / "fixtures" / "keras" / "keras_model.py"


# ----------------------------------------------------------------------------- timing (both sides)
def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def time_calls(fn: Callable[[], Any], seconds: float, *, warmup: int = 2, min_calls: int = 3) -> dict[str, Any]:
    """Per-call wall times of ``fn`` after ``warmup`` calls, for at least ``seconds`` and ``min_calls`` calls.

    ``fn`` must return only when its work is done (synchronise an accelerator inside it). Returns the
    times, their median, the first warm-up call's time (tracing / compilation) and ``cpu_per_wall``:
    the process's user + system CPU seconds per wall second over the timed calls.
    """
    first = None
    for i in range(warmup):
        start = time.perf_counter()
        fn()
        if i == 0:
            first = time.perf_counter() - start
    times: list[float] = []
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - wall0 < seconds:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    wall = time.perf_counter() - wall0
    return {
        "times_s": [round(t, 6) for t in times],
        "median_s": _median(times),
        "first_call_s": None if first is None else round(first, 4),
        "cpu_per_wall": round((_cpu_seconds() - cpu0) / wall, 3) if wall > 0 else None,
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def upper_median(values: list[float]) -> float:
    """The middle of ``values``, the upper of the two middle ones for an even count (always a measured value)."""
    return sorted(values)[len(values) // 2]


def spread(values: list[float]) -> float:
    """``max / min - 1`` of positive ``values`` (rates or times of the rounds), rounded to 4 digits."""
    return round(max(values) / min(values) - 1, 4)


# ----------------------------------------------------------------------------- measuring side (TensorFlow)
def configure_tensorflow(threads: int, inter_op_threads: int) -> Any:
    """Import TensorFlow with quiet logs and the given thread pools (before any op runs); returns ``tf``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    return tf


def keras_model_module() -> Any:
    """The authors' architecture, :data:`KERAS_MODEL`, loaded by path (it lives with the Keras weight fixture)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lanmsff_keras_model", KERAS_MODEL)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(KERAS_MODEL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TFPeer:
    """The authors' model with its optimiser; compiled inference and training functions per batch size."""

    def __init__(self, tf: Any, seed: int = 0) -> None:
        import keras

        self.tf, self.keras = tf, keras
        keras.utils.set_random_seed(seed)
        self.model, _ = keras_model_module().build_reference(NUM_CLASSES, IMAGE_SHAPE)
        self.optimizer = keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7)
        self.optimizer.build(self.model.trainable_variables)
        self.loss = keras.losses.CategoricalCrossentropy()
        self._functions: dict[tuple[str, bool], Callable] = {}

    def inputs(self, batch: int, seed: int = 0) -> tuple[Any, Any]:
        """A random image batch in [0, 1] (NHWC float32) and one-hot labels."""
        import numpy as np

        rng = np.random.default_rng(seed)
        x = rng.random((batch, *IMAGE_SHAPE), dtype=np.float32)
        y = np.eye(NUM_CLASSES, dtype=np.float32)[rng.integers(0, NUM_CLASSES, batch)]
        return self.tf.constant(x), self.tf.constant(y)

    def function(self, kind: str, xla: bool) -> Callable:
        """``tf.function`` of inference or of one training step (``xla``: ``jit_compile=True``)."""
        key = (kind, xla)
        if key not in self._functions:
            body = self._infer if kind == "inference" else self._train_step
            self._functions[key] = self.tf.function(body, jit_compile=xla)
        return self._functions[key]

    def _infer(self, x: Any, y: Any) -> Any:
        return self.model(x, training=False)

    def _train_step(self, x: Any, y: Any) -> Any:
        with self.tf.GradientTape() as tape:
            loss = self.loss(y, self.model(x, training=True))
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return loss

    def measure(self, kind: str, batch: int, seconds: float, *, xla: bool = False, warmup: int = 2) -> dict[str, Any]:
        """Images/s of ``kind`` (``inference`` or ``training``) at ``batch``, timed by :func:`time_calls`."""
        if kind not in ("inference", "training"):
            raise ValueError(f"unknown kind {kind!r}")
        fn, (x, y) = self.function(kind, xla), self.inputs(batch)
        timing = time_calls(lambda: fn(x, y).numpy(), seconds, warmup=max(warmup, 1))
        rate = round(batch / timing["median_s"], 2)
        return {"kind": kind, "batch": batch, "xla": xla, **timing, "images_per_s": rate}

    def info(self) -> dict[str, Any]:
        """Versions and thread pools as TensorFlow reports them; oneDNN on or off."""
        tf = self.tf
        return {
            "tensorflow": tf.__version__,
            "keras": self.keras.__version__,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 Linux builds)"),
            "trainable_params": int(sum(int(tf.size(v)) for v in self.model.trainable_variables)),
            "python": sys.version.split()[0],
        }


def serve(peer: TFPeer, stdin: IO[str], stdout: IO[str]) -> None:
    """Answer one JSON request per line (``measure``, ``info``, ``quit``) with one JSON line each."""
    _reply(stdout, {"ok": True, "ready": True, **peer.info()})
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            op = request.pop("op")
            if op == "quit":
                break
            answer = peer.info() if op == "info" else peer.measure(**request) if op == "measure" else None
            if answer is None:
                raise ValueError(f"unknown op {op!r}")
            _reply(stdout, {"ok": True, **answer})
        except Exception as err:  # the error goes back to the caller, the server goes on
            _reply(stdout, {"ok": False, "error": f"{type(err).__name__}: {err}"})


def _reply(stdout: IO[str], message: dict[str, Any]) -> None:
    stdout.write(json.dumps(message) + "\n")
    stdout.flush()


def standalone(peer: TFPeer, args: argparse.Namespace) -> dict[str, Any]:
    """Inference at ``--batch`` and training at every ``--train-batch`` (plus XLA with ``--xla``)."""
    result: dict[str, Any] = {"peer": peer.info(), "inference": {}, "training": {}}
    for xla in (False, True) if args.xla else (False,):
        label = "xla" if xla else "tf.function"
        row = peer.measure("inference", args.batch, args.seconds, xla=xla)
        result["inference"][f"{label}, batch {args.batch}"] = row
        for batch in _batches(args.train_batch):
            row = peer.measure("training", batch, args.train_seconds, xla=xla)
            result["training"][f"{label}, batch {batch}"] = row
    return result


def _batches(text: str) -> list[int]:
    return [int(part) for part in str(text).split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="TF intra-op threads (default: %(default)s)")
    parser.add_argument("--inter-op-threads", type=int, default=None, help="TF inter-op threads (default: --threads)")
    parser.add_argument("--batch", type=int, default=64, help="inference batch (default: %(default)s)")
    parser.add_argument("--train-batch", default="64", help="training batches, comma-separated (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per inference measurement")
    parser.add_argument("--train-seconds", type=float, default=8.0, help="timed seconds per training measurement")
    parser.add_argument("--xla", action="store_true", help="also time jit_compile=True (XLA)")
    parser.add_argument("--serve", action="store_true", help="answer JSON requests on stdin (used by the bench)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tf = configure_tensorflow(args.threads, args.inter_op_threads or args.threads)
    peer = TFPeer(tf)
    if args.serve:
        serve(peer, sys.stdin, sys.stdout)
        return 0
    result = standalone(peer, args)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


# ----------------------------------------------------------------------------- launching side (project venv)
class PeerError(RuntimeError):
    """The peer process could not start or answer."""


def find_peer_python(explicit: str | Path | None = None) -> tuple[Path | None, str]:
    """The peer's python and where it came from, or ``(None, why not)``.

    Looked for in order: ``explicit`` (``--peer-python``), ``$LANMSFF_PEER_PYTHON``, then
    ``.venv-peer/bin/python`` in the current directory and in the checkout that holds ``benchmarks/``.
    """
    if explicit:
        path = Path(explicit)
        return (path, "--peer-python") if path.is_file() else (None, f"--peer-python {path} does not exist")
    if os.environ.get(PEER_ENV):
        path = Path(os.environ[PEER_ENV])
        return (path, f"${PEER_ENV}") if path.is_file() else (None, f"${PEER_ENV}={path} does not exist")
    for base in (Path.cwd(), CHECKOUT):
        candidate = base / PEER_VENV / "bin" / "python"
        if candidate.is_file():
            return candidate, str(base / PEER_VENV)
    return None, f"no {PEER_VENV}/bin/python (make bench-peer creates it) and no --peer-python"


class PeerProcess:
    """The measuring side in a subprocess of the peer's python; :meth:`request` sends one request.

    Use as a context manager; the process is asked to quit (and killed if it does not) on exit.
    Its stderr (TensorFlow's log) goes to ``log`` when given, else is discarded.
    """

    def __init__(self, python: Path, *, threads: int, inter_op_threads: int, log: Path | None = None) -> None:
        self.command = [
            str(python),
            "-m",
            "benchmarks.peer",
            "--serve",
            "--threads",
            str(threads),
            "--inter-op-threads",
            str(inter_op_threads),
        ]
        self.log = log
        self.process: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}

    def __enter__(self) -> PeerProcess:
        env = {**os.environ, "PYTHONPATH": str(CHECKOUT), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        stderr: Any = open(self.log, "w") if self.log else subprocess.DEVNULL
        self._stderr = stderr
        try:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
            )
        except OSError as err:
            raise PeerError(f"could not start {self.command[0]}: {err}") from err
        self.info = self._read()
        return self

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send ``op`` with ``fields``; the answer (``PeerError`` if the peer reports an error)."""
        if self.process is None or self.process.stdin is None:
            raise PeerError("the peer is not running")
        try:
            self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError as err:
            raise PeerError(f"the peer exited ({self._tail()})") from err
        return self._read()

    def measure(self, kind: str, batch: int, seconds: float, *, xla: bool = False) -> dict[str, Any]:
        return self.request("measure", kind=kind, batch=batch, seconds=seconds, xla=xla)

    def _read(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise PeerError(f"the peer exited without answering ({self._tail()})")
        message = json.loads(line)
        if not message.get("ok"):
            raise PeerError(message.get("error", "unknown error"))
        return {k: v for k, v in message.items() if k not in ("ok", "ready")}

    def _tail(self) -> str:
        if self.log and self.log.is_file():
            lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
            return "; ".join(lines[-3:]) or "no output"
        return "stderr not kept"

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            try:
                if self.process.poll() is None and self.process.stdin is not None:
                    self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                    self.process.stdin.close()
                self.process.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        if self._stderr is not subprocess.DEVNULL:
            self._stderr.close()


if __name__ == "__main__":
    raise SystemExit(main())
