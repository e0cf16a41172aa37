"""The demo over several seeds: ``python -m benchmarks.demo [--seeds 42 1 2]`` (``make bench-demo``).

Runs ``train.py experiment=demo seed=S`` for each seed, one after the other, as a user runs ``make train``
(the synthetic tree is generated once, before the first seed, and not timed), and adds one run to this
CPU kind's results file with, per seed, the test accuracy on the unseen people and the seconds of
training and test (``duration_s`` of the run's ``summary.json``). The run carries the demo's design (a hash
of ``lanmsff/conf/experiment/demo.yaml``): the README's demo line is generated from the newest run of the current
design on each CPU kind (:mod:`benchmarks.tables`). Time nothing else on the machine meanwhile; the load
average is recorded to show it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.result_files import RESULTS_DIR, add_run, today

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "src" / "lanmsff" / "conf" / "experiment" / "demo.yaml"


def demo_design() -> str:
    """A short fingerprint of the demo's config: runs of another design are not the current demo's."""
    return hashlib.sha256(DEMO_CONFIG.read_bytes()).hexdigest()[:12]


def run_seed(seed: int, workdir: Path, extra: list[str]) -> dict[str, Any]:
    """One demo run; its summary's status, test accuracy and seconds."""
    run_dir = workdir / f"seed-{seed}"
    args = [sys.executable, str(ROOT / "train.py"), "experiment=demo", f"seed={seed}", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "LANMSFF_QUIET": "1", "WANDB_MODE": "disabled"}
    result = subprocess.run([*args, *extra], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    summary_file = run_dir / "summary.json"
    if result.returncode != 0 or not summary_file.is_file():
        raise SystemExit(
            f"error: the demo with seed {seed} failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
        )
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    return {"seed": seed, "test_acc": summary["metrics"]["test/acc"], "seconds": round(summary["duration_s"], 1)}


def prepare_demo_data() -> Path:
    """Draw the demo's synthetic tree where ``make train`` finds it (under the repository), if not there yet."""
    from hydra import compose, initialize_config_dir

    from lanmsff.data.kdef_names import SESSIONS
    from lanmsff.data.synthetic import generate
    from lanmsff.utils.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        data = compose(config_name="train", overrides=["experiment=demo", f"paths.root_dir={ROOT}"]).data
    return generate(data.root, data.identities, sessions=data.sessions or SESSIONS, seed=data.generator_seed)


def measure(seeds: list[int], extra: list[str]) -> dict[str, Any]:
    """The demo run of the results file: every seed's numbers and what they ran on."""
    from lanmsff.runtime.hardware import cpu_description  # after prepare_process: torch loads here

    prepare_demo_data()
    with tempfile.TemporaryDirectory(prefix="lanmsff-demo-") as tmp:
        load_start = [round(v, 2) for v in os.getloadavg()]
        results = [run_seed(seed, Path(tmp), extra) for seed in seeds]
    accuracies = [r["test_acc"] for r in results]
    machine = {**cpu_description(), "load_average_start": load_start}
    machine["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return {
        "title": f"the demo, {len(seeds)} seeds",
        "date": today(),
        "command": "python -m benchmarks.demo " + shlex.join(["--seeds", *map(str, seeds), *extra]),
        "machine": machine,
        "demo_runs": [
            {
                "what": "make train (" + (" ".join(extra) if extra else "experiment=demo") + ")",
                "design": demo_design(),
                "seeds": seeds,
                "test_acc": [round(a, 4) for a in accuracies],
                "seconds": [r["seconds"] for r in results],
            }
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="(default: benchmarks/results)")
    parser.add_argument("--note", default=None, help="a note kept with the run (e.g. what else ran meanwhile)")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides (then the run is not the demo's)")
    args = parser.parse_args(argv)
    run = measure(args.seeds, args.overrides)
    if args.overrides:
        run["demo_runs"][0]["design"] += "+overrides"
    if args.note:
        run["notes"] = [args.note]
    demo = run["demo_runs"][0]
    print(json.dumps(demo, indent=2))
    print(f"Added to {add_run(args.results_dir, run)}")
    return 0


if __name__ == "__main__":
    from lanmsff.runtime.process import prepare_process

    prepare_process()
    raise SystemExit(main())
