"""``python -m benchmarks``: it runs end to end and records what it claims to measure (no timing is asserted);
its results files have the schema that ``make speed-tables`` reads, and ``docs/speed-results.md`` is generated
from the committed ones."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import tables
from benchmarks.models import DEFAULT_BF16
from benchmarks.result_files import (
    RESULTS_DIR,
    ResultsError,
    ResultsFile,
    add_run,
    cpu_kind,
    problems,
    read,
    read_all,
)
from lanmsff.runtime.hardware import NATIVE_BF16_ENV, cpu_has_native_bf16

from .helpers.bench import run_bench as _bench

ROOT = Path(__file__).resolve().parents[1]

SAFE_BF16 = DEFAULT_BF16  # the training default on a CPU with native bf16: every CPU kernel of model.cpu_kernels=auto


def _check_common(results: dict) -> None:
    lanmsff = results["models"]["lanmsff"]
    assert lanmsff["params"] == 356_294 and round(lanmsff["flops"] / 1e9, 2) == 0.60
    throughput = lanmsff["inference"]["throughput"]
    assert {"eager fp32 NCHW", "channels-last", "optimize(fp32)", "optimize(fp32, onnxruntime)"} <= set(throughput)
    assert any(label.startswith("optimize(auto=") for label in throughput)
    baseline = throughput["eager fp32 NCHW"]["images_per_s"]
    for row in throughput.values():  # every ratio is against the same run's eager baseline
        assert row["ratio"] == pytest.approx(row["images_per_s"] / baseline, abs=2e-3)
    assert all(row["images_per_s"] > 0 for row in throughput.values())
    assert set(lanmsff["inference"]["latency_ms"]) == {"eager fp32 NCHW", "optimize(fp32)", "optimize(auto)"}
    assert lanmsff["training"]["eager fp32 NCHW"]["conv_grad_audit"]["ok"]
    assert all(row["images_per_s"] > 0 for row in results["data_path"].values())
    assert set(results["targets"]) == {"inference_fp32", "inference_auto_bf16", "training_safe"}
    assert results["machine"]["cores"] >= 1


# The quick bench as this CPU runs it (bf16 where it is native), and as an AVX2-only CPU without native
# bf16 runs it (LANMSFF_NATIVE_BF16=0 with torch's and oneDNN's kernels limited to AVX2): both paths are
# exercised on every machine kind, and the limits are recorded and named.
AVX2_STAND_IN = {NATIVE_BF16_ENV: "0", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


@pytest.mark.slow
@pytest.mark.parametrize("native", ["detected", "0"])
def test_quick_bench_records_every_measurement(native: str, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {} if native == "detected" else AVX2_STAND_IN
    result = _bench("--quick", "--out", str(out), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Results: {out}" in result.stdout
    results = json.loads(out.read_text())
    _check_common(results)
    expect_bf16 = cpu_has_native_bf16() if native == "detected" else False
    assert results["machine"]["native_bf16"] is expect_bf16
    training = results["models"]["lanmsff"]["training"]
    auto = next(label for label in results["models"]["lanmsff"]["inference"]["throughput"] if "auto=" in label)
    if expect_bf16:
        assert auto == "optimize(auto=bf16)"
        assert training[SAFE_BF16]["conv_grad_audit"]["ok"]  # the guard the training default uses is right
        assert results["bf16_loss_check"][SAFE_BF16]["finite"]
        assert results["bf16_agreement"]["heldout"]["images"] > 0
        assert "bf16" not in results.get("skipped", {})
    else:
        assert auto == "optimize(auto=fp32)"
        assert not any("bf16" in label for label in training)  # nothing emulated was timed
        assert "bf16_loss_check" not in results and "bf16_agreement" not in results
        assert "no native bf16" in results["skipped"]["bf16"]
        assert "bf16 skipped" in result.stderr + result.stdout
    if native == "0":
        limits = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
        assert results["machine"]["isa_limits"] == limits and results["machine"]["capability"] == "AVX2"
        assert "kernels limited by ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2" in result.stdout
    elif not any(name in os.environ for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")):
        assert "kernels limited by" not in result.stdout
    _check_versus(results, result.stdout + result.stderr)
    _check_results_file(results, tmp_path / "results")


def _check_results_file(results: dict, folder: Path) -> None:
    """The run went to <folder>/<cpu-kind>-<date>.json as the generator of the speed tables reads it."""
    (path,) = folder.glob("*.json")
    assert path.name == f"{cpu_kind(results['machine'])}-{results['date']}.json"
    stored = read(path)  # raises if the schema is not the generator's
    assert stored.kind == results["cpu_kind"] and stored.runs == [results]
    page = tables.render([stored])
    for title in ("**LANMSFF, inference**", "**LANMSFF, training step**", "**The training loader**"):
        assert title in page
    assert "(transcribed)" not in page and "A quick run" in page


def _check_versus(results: dict, output: str) -> None:
    """--quick measures our side of the comparison with TF and says that the peer was skipped."""
    versus = results["versus_tf"]
    assert results["skipped"]["peer"].startswith("peer skipped: --quick") and "peer skipped: --quick" in output
    rows = versus["rows"]
    assert {"ours: optimize(precision='auto')", "ours: optimize(precision='fp32')"} <= set(rows)
    assert sum(label.startswith("ours: training default") for label in rows) == 2  # --batch and 32
    assert rows["ours: demo's Lightning loop, batch 32"]["images_per_s"] > 0
    assert versus["lightning"]["torch_threads"] == [versus["threads"]["torch_intra_op"]]
    assert versus["allocator_tuned"] is True and "ratios" not in versus


def test_unknown_model_is_a_user_error(tmp_path: Path) -> None:
    result = _bench("--models", "lanmsff,vgg16", "--out", str(tmp_path / "r.json"), cwd=tmp_path)
    assert result.returncode == 2
    assert "--models: unknown vgg16; choices: lanmsff," in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r.json").exists()


FAKE_PEER = """#!{python}
import json, sys
print(json.dumps({{"ok": True, "ready": True, "tensorflow": "fake", "keras": "fake", "intra_op_threads": 2,
                  "inter_op_threads": 2}}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "quit":
        break
    seconds = 0.5 if request["kind"] == "inference" else 2.0
    print(json.dumps({{"ok": True, "times_s": [seconds] * 3, "median_s": seconds, "cpu_per_wall": 2.0,
                      "images_per_s": request["batch"] / seconds}}), flush=True)
"""


def _fake_peer(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "peer_python"
    path.write_text(text.format(python=sys.executable))
    path.chmod(0o755)
    return path


@pytest.fixture
def one_thread():
    """One torch thread (a shared machine's busy cores make two spinning threads slow; the numbers are not judged)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def test_versus_puts_the_peer_next_to_ours(tmp_path: Path, one_thread: None) -> None:
    """The interleaved comparison with a stand-in for the TF process: rows, ratios ours / TF, thread counts."""
    from benchmarks.models import Settings
    from benchmarks.peer import upper_median
    from benchmarks.versus import TF_INFERENCE, run_versus

    s = Settings(batch=4, min_run_time=0.05, train_run_time=0.05, quick=True)
    peer = _fake_peer(tmp_path, FAKE_PEER)
    cpu = torch.device("cpu")
    result = run_versus(peer, s, device=cpu, rounds=2, lightning=None, log=tmp_path / "peer.log", train_batches=(4, 2))
    rows, ratios = result["rows"], result["ratios"]
    assert rows[TF_INFERENCE]["images_per_s"] == 8.0 and len(rows[TF_INFERENCE]["round_medians_s"]) == 2
    assert rows["TF GradientTape step, batch 2"]["images_per_s"] == 1.0
    label = "ours: optimize(precision='fp32')"
    assert ratios[label] == round(rows[label]["images_per_s"] / 8.0, 3)
    per_round = [tf / ours for ours, tf in zip(rows[label]["round_medians_s"], rows[TF_INFERENCE]["round_medians_s"])]
    paired = {"median": upper_median(per_round), "min": min(per_round), "max": max(per_round)}
    assert ratios["paired"][label] == {k: round(v, 3) for k, v in paired.items()}  # ours / TF in each round
    assert sum(key.startswith("ours: training default") for key in ratios) == 2
    assert len(result["load_1min_per_round"]) == 2
    threads = result["threads"]
    assert threads["torch_intra_op"] == 1
    assert (threads["tf_intra_op"], threads["tf_inter_op"]) == (2, 2)
    assert result["pairs"][label] == TF_INFERENCE and set(result["pairs"]) == set(ratios) - {"paired"}


def test_a_broken_peer_is_reported(tmp_path: Path) -> None:
    from benchmarks.peer import PeerError, PeerProcess, find_peer_python

    broken = _fake_peer(tmp_path, "#!{python}\nimport sys\nprint('no tensorflow here', file=sys.stderr)\nsys.exit(1)\n")
    with (
        pytest.raises(PeerError, match="no tensorflow here"),
        PeerProcess(broken, threads=2, inter_op_threads=2, log=tmp_path / "peer.log"),
    ):
        pass
    assert find_peer_python(tmp_path / "missing") == (None, f"--peer-python {tmp_path / 'missing'} does not exist")


def test_time_calls_warms_up_then_times_each_call() -> None:
    from benchmarks.peer import time_calls

    calls = []
    timing = time_calls(lambda: calls.append(1), 0.0, warmup=2, min_calls=5)
    assert len(calls) == 7 and len(timing["times_s"]) == 5 and timing["median_s"] >= 0


PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.skipif(not PEER_PYTHON.is_file(), reason="no .venv-peer (make bench-peer creates it)")
def test_the_tensorflow_peer_runs_standalone(tmp_path: Path) -> None:
    """The authors' Keras model (356,294 parameters) timed by the peer venv's TensorFlow, threads as asked."""
    args = ["--threads", "2", "--inter-op-threads", "1", "--batch", "4", "--train-batch", "4"]
    result = subprocess.run(
        [str(PEER_PYTHON), "-m", "benchmarks.peer", *args, "--seconds", "0.1", "--train-seconds", "0.1"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["peer"]["trainable_params"] == 356_294
    assert (out["peer"]["intra_op_threads"], out["peer"]["inter_op_threads"]) == (2, 1)
    assert out["inference"]["tf.function, batch 4"]["images_per_s"] > 0
    assert out["training"]["tf.function, batch 4"]["images_per_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is there")
def test_device_cuda_without_cuda_is_a_user_error(tmp_path: Path) -> None:
    result = _bench("--device", "cuda", "--out", str(tmp_path / "r.json"), cwd=tmp_path)
    assert result.returncode == 2 and "--device cuda: no CUDA device" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r.json").exists()


def test_every_lever_can_be_named_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.levers import DEFAULT_LEVERS, LEVERS, main

    assert DEFAULT_LEVERS and not [name for name in LEVERS if "," in name]
    assert main(["--levers", "default,warp-drive"]) == 2
    assert f"error: --levers: unknown warp-drive; choices: {', '.join(LEVERS)}" in capsys.readouterr().err


# ----------------------------------------------------------------------------- results files and the speed tables
def test_the_readme_demo_line_is_the_newest_run_of_the_current_demo_design() -> None:
    def demo_run(date: str, design: str, accuracies: list[float]) -> ResultsFile:
        run = {"demo_runs": [{"design": design, "seeds": [42, 1, 2], "test_acc": accuracies, "seconds": [300] * 3}]}
        data = {"cpu_kind": "amd-f25-avx2", "date": date, "runs": [run]}
        return ResultsFile(Path(f"amd-f25-avx2-{date}.json"), data)

    files = [demo_run("2026-12-04", "abc", [0.6, 0.7, 0.8]), demo_run("2026-12-05", "old", [0.1, 0.1, 0.1])]
    line = tables.demo_line(files, "abc")
    assert "5.0 min of training and test, 70.0% mean test accuracy over seeds 42, 1, 2" in line
    assert "2026" not in line  # the README stays undated: the date is on the results page
    assert "none yet" in tables.demo_line(files, "new")
    start, end = tables.DEMO_MARKERS
    assert tables.with_demo_line(f"a\n{start}\nold\n{end}\nb", "new") == f"a\n{start}\nnew\n{end}\nb"
    with pytest.raises(ResultsError, match="markers"):
        tables.with_demo_line("no markers", "new")


PAGE = ROOT / "docs" / "speed-results.md"


def test_the_speed_results_page_is_generated_from_the_results_files(tmp_path: Path) -> None:
    """docs/speed-results.md is what ``make speed-tables`` writes from benchmarks/results/ (regenerated, compared)."""
    out, readme, faces = tmp_path / "speed-results.md", tmp_path / "README.md", tmp_path / "faces.md"
    readme.write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    faces.write_text((ROOT / "docs" / "faces.md").read_text(encoding="utf-8"), encoding="utf-8")
    paths = ["--out", str(out), "--readme", str(readme), "--faces-doc", str(faces)]
    assert tables.main(["--results-dir", str(RESULTS_DIR), *paths]) == 0
    assert PAGE.read_text(encoding="utf-8") == out.read_text(encoding="utf-8"), (
        "docs/speed-results.md is out of date with benchmarks/results/: run make speed-tables"
    )
    assert (ROOT / "README.md").read_text(encoding="utf-8") == readme.read_text(encoding="utf-8"), (
        "README.md's demo line is out of date with benchmarks/results/: run make speed-tables"
    )
    assert (ROOT / "docs" / "faces.md").read_text(encoding="utf-8") == faces.read_text(encoding="utf-8"), (
        "docs/faces.md's speed table is out of date with benchmarks/results/faces/: run make speed-tables"
    )
    assert tables.main([*paths, "--check"]) == 0
    out.write_text(out.read_text() + "edited by hand\n")
    assert tables.main([*paths, "--check"]) == 1


def test_the_face_speed_table_takes_the_newest_run_of_each_kind(tmp_path: Path) -> None:
    def run(date: str, kind: str, ours: float) -> dict:
        found = {"frames": 10, "frames_with_face": 9, "faces": 9}
        results = {"ours_blazeface": {**found, "frames_per_s": ours}, "fer_mtcnn": {**found, "frames_per_s": 2.0}}
        return {"date": date, "cpu_kind": kind, "clip": "c.mp4", "frames": 10, "threads": 2, "results": results}

    (tmp_path / "a.json").write_text(json.dumps([run("2026-01-01", "amd-f25-avx2", 5.0)]))
    (tmp_path / "b.json").write_text(json.dumps([run("2026-02-01", "amd-f25-avx2", 8.0), run("2026-01-05", "x", 1)]))
    table = tables.faces_table(tmp_path)
    assert "| ours, BlazeFace every frame | 8 | 4 | 9 / 10 |" in table and "| 5 |" not in table
    assert table.index("amd-f25-avx2") < table.index("`x`"), "the CI's kinds first"
    assert "No run recorded yet" in tables.faces_table(tmp_path / "none")


def test_the_committed_results_files_are_readable_and_named_by_kind_and_date() -> None:
    files = read_all(RESULTS_DIR)  # raises on a file the generator cannot read
    kinds = {f.kind for f in files}
    assert {"intel-avx512bf16-amx", "amd-f26-avx512bf16", "amd-f25-avx2"} <= kinds
    for file in files:
        assert file.path.name == f"{file.kind}-{file.date}.json" and not problems(file.data, file.path.name)
        for run in file.runs:
            if run.get("source"):  # transcribed: says from where, and that record's dates
                assert "d8890c6" in run["source"] and "README" in run["source"]
                assert file.date in file.data["dates_in_source"]


def test_the_speed_results_page_speaks_plain_words() -> None:
    """No bench jargon on the page; "CPU kind" is defined once; every CPU kind has its section."""
    text = PAGE.read_text(encoding="utf-8")
    assert not re.search(r"\b(peers?|levers?)\b", text, re.IGNORECASE)
    assert text.count("A **CPU kind** is") == 1
    for kind in ("intel-avx512bf16-amx", "amd-f26-avx512bf16", "amd-f25-avx2"):
        assert f"{{#{kind}}}" in text


@pytest.mark.parametrize(
    ("machine", "kind"),
    [
        (
            {"cpu_id": "GenuineIntel family 6 model 143", "flags": ["amx_bf16", "amx_tile", "avx2", "avx512_bf16"]},
            "intel-avx512bf16-amx",
        ),
        ({"cpu_id": "AuthenticAMD family 25 model 1", "flags": ["avx2"]}, "amd-f25-avx2"),
        (
            {"cpu_id": "AuthenticAMD family 26 model 2", "flags": ["avx2", "avx512_bf16", "avx512f"]},
            "amd-f26-avx512bf16",
        ),
        (
            {
                "cpu_id": "GenuineIntel family 6 model 143",
                "flags": ["amx_bf16", "avx512_bf16"],
                "capability": "AVX2",
                "isa_limits": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
                "native_bf16_override": "0",
            },
            "intel-avx512bf16-amx-limited-avx2",
        ),
        (
            {"cpu_id": "AuthenticAMD family 26 model 2", "flags": ["avx512_bf16"], "native_bf16_override": "0"},
            "amd-f26-avx512bf16-bf16-off",
        ),
        ({"cpu_id": "unknown", "flags": []}, "unknown"),
    ],
)
def test_the_cpu_kind_names_vendor_family_and_vector_extensions(machine: dict, kind: str) -> None:
    assert cpu_kind(machine) == kind


def test_runs_of_one_kind_and_date_share_one_results_file(tmp_path: Path) -> None:
    machine = {"cpu": "AMD EPYC", "cpu_id": "AuthenticAMD family 25 model 1", "flags": ["avx2"], "cores": 2}
    run = {
        "date": "2026-12-03",
        "machine": machine,
        "data_path": {"num_workers=0": {"num_workers": 0, "images_per_s": 900.0}},
    }
    first = add_run(tmp_path, run)
    assert add_run(tmp_path, {**run, "seconds": 60.0}) == first
    assert first.name == "amd-f25-avx2-2026-12-03.json" and len(read(first).runs) == 2
    assert add_run(tmp_path, {**run, "date": "2026-12-04"}).name == "amd-f25-avx2-2026-12-04.json"
    with pytest.raises(ResultsError, match=re.escape("versus_tf.rows.ours: no batch")):
        add_run(tmp_path, {**run, "versus_tf": {"rows": {"ours": {"images_per_s": 3.0}}}})
    first.rename(tmp_path / "amd-f26-avx512bf16-2026-12-03.json")  # a file under another kind's name
    with pytest.raises(ResultsError, match=re.escape("is not <cpu_kind>-<date>.json")):
        read_all(tmp_path)
    page = tables.render([read(tmp_path / "amd-f25-avx2-2026-12-04.json")])
    assert "## `amd-f25-avx2`: AMD, CPU family 25, AVX2 only {#amd-f25-avx2}" in page and "| 0 | 900.0 |" in page
