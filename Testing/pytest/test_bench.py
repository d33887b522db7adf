"""``sparsert bench`` on one small case: the JSON and Markdown results, missing models skipped rather than failed.

Timings and memory are only checked to be positive: speed is measured by running the benchmark, never in tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crossmodal_testdata import one_thread  # noqa: F401 (fixture)
from interactive_testdata import save_model, tiny_model
from sparsert.benchmarks.suite import default_data
from sparsert.benchmarks.workloads import MODEL_KINDS, WORKLOADS, Job, measure
from sparsert.cli import bench_cmd
from sparsert.cli.main import main

MEASURED = ("completion-growcut", "dose-mask")
MISSING = ("completion-scm", "dose-scribble", "interactive")


@pytest.fixture(scope="module")
def bench(tiny_openkbp, tiny_dose_run, tmp_path_factory) -> Path:
    """A run of the peer completion and the dose from masks (a tiny trained model) on one cropped case;
    the SCM and click models are named but do not exist."""
    run, _ = tiny_dose_run
    out = tmp_path_factory.mktemp("bench")
    args = ["bench", "--out", str(out), "--workloads", *MEASURED, *MISSING,
            "--completion-data", str(tiny_openkbp), "--dose-data", str(tiny_openkbp), "--max-cases", "1",
            "--threads", "1", "--device", "cpu", "--precision", "bfloat16",
            "--model", f"dose={run / 'best.pt'}", "--model", "scm=no-such-scm", "--model", "icr=no-such-icr"]
    assert main(args) == 0
    return out


def test_results_json(bench, tiny_openkbp):
    result = json.loads((bench / "bench.json").read_text())
    machine = result["machine"]
    for key in ("cpu", "logical_cores", "usable_cores", "os", "python", "sparsert"):
        assert machine[key], key
    assert machine["torch"] == torch.__version__ and machine["torch_threads"] == 1 and machine["device"] == "cpu"
    assert result["settings"]["max_cases"] == 1 and result["settings"]["models"]["scm"] == "no-such-scm"
    assert result["settings"]["precision"] == "bfloat16"
    workloads = {w["name"]: w for w in result["workloads"]}
    assert list(workloads) == [*MEASURED, *MISSING]
    first_case = sorted(p.name for p in tiny_openkbp.iterdir())[0]
    for name in MEASURED:
        w = workloads[name]
        assert w["status"] == "measured" and w["reason"] is None and w["cases"] == 1
        assert w["data"] == str(tiny_openkbp)
        assert w["seconds"]["n"] == 1 and 0 < w["seconds"]["median"] <= w["seconds"]["max"]
        assert w["model_load_s"] >= 0 and w["peak_rss_mb"] > 0
        (case,) = w["per_case"]
        assert case["case_id"] == first_case and case["seconds"] == pytest.approx(w["seconds"]["mean"])
    assert set(workloads["completion-growcut"]["steps"]) == {"completion"}
    assert set(workloads["dose-mask"]["steps"]) == {"dose"}
    assert workloads["dose-mask"]["models"]["dose"].endswith("best.pt")
    for name, model in zip(MISSING, ("no-such-scm", "no-such-scm", "no-such-icr")):
        w = workloads[name]
        assert w["status"] == "skipped" and w["reason"].startswith("not available: ") and model in w["reason"]
        assert "seconds" not in w


def test_results_markdown(bench):
    text = (bench / "bench.md").read_text()
    assert text.startswith("# SparseRT benchmark")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| workload | what | cases | median s/case")
    assert [r.split(" | ")[0][2:] for r in rows[1:]] == list(MEASURED)
    for name in MISSING:
        assert f"- {name} (skipped): not available: " in text
    assert "benchmarks/training_throughput.py" in text  # where training throughput is measured
    assert "completion, dose and cross-modal networks in bfloat16" in text


def test_existing_results_are_kept(bench, capsys):
    before = (bench / "bench.json").read_text()
    assert main(["bench", "--out", str(bench), "--workloads", "completion-scm"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (bench / "bench.json").read_text() == before


def test_failed_workload_is_reported_and_the_exit_code_says_so(sts_dir, tmp_path, capsys):
    not_a_model = tmp_path / "not-a-model.pt"
    torch.save({"weights": 1}, not_a_model)
    out = tmp_path / "out"
    args = ["bench", "--out", str(out), "--workloads", "crossmodal", "--crossmodal-data", f"sts:{sts_dir / 'STS_001'}",
            "--model", f"crossmodal={not_a_model}", "--threads", "1", "--device", "cpu"]
    assert main(args) == 1
    assert "failed: crossmodal" in capsys.readouterr().out
    (entry,) = json.loads((out / "bench.json").read_text())["workloads"]
    assert entry["status"] == "failed" and "not a cross-modal segmentation checkpoint" in entry["reason"]
    assert "- crossmodal (failed): " in (out / "bench.md").read_text()


@pytest.mark.usefixtures("one_thread")
def test_interactive_workload_times_setup_the_automatic_result_and_each_click(sts_dir, tmp_path):
    """Measured here rather than through the CLI: no click model is shipped, and a tiny one is enough."""
    model = save_model(tiny_model(spacing=(4.0, 4.0, 6.0)), tmp_path / "icr")
    job = Job("interactive", f"sts:{sts_dir / 'STS_001'}", ("STS_001",), {"icr": str(model)}, threads=1, clicks=2)
    (case,) = measure(job)["cases"]
    assert case["case_id"] == "STS_001" and set(case["steps"]) == {"setup", "initial", "click"}
    assert 1 <= len(case["steps"]["click"]) <= 2
    assert case["seconds"] == pytest.approx(sum(sum(v) for v in case["steps"].values())) and case["peak_rss_mb"] > 0


def test_cli_lists_the_workloads_model_kinds_and_data_families():
    """The CLI names them without importing torch; they must match the benchmark's own."""
    assert bench_cmd.WORKLOAD_NAMES == tuple(WORKLOADS)
    assert bench_cmd.MODEL_KIND_NAMES == tuple(MODEL_KINDS)
    assert set(bench_cmd.FAMILY_DATA) == set(default_data())
