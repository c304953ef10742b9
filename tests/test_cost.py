"""The cost of a run: parameters, FLOPs per image (torch's FLOP counter, checked against hand counts), images/s of the
scoring phase and peak memory, recorded in run.json (not keyed), kept by a reused run, shown by leaderboards (CLI,
Python, CSV, Markdown) and reports, and n/a with a reason for runs written before it was measured."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke
from replicas import build_folder
from torch import nn

import detbench
from detbench.engine.cost import NOT_RECORDED
from detbench.kit.cost import CPU_PEAK, count_flops, count_parameters, peak_memory
from detbench.store import seal_record

TINY = {"backbone": "timm:efficientnet_lite0@bundled", "crop": 32}


def test_a_linear_layer_costs_2_in_out_flops_per_image() -> None:
    layer = nn.Linear(7, 5)
    assert count_flops(layer, torch.randn(1, 7)) == 2 * 7 * 5
    assert count_flops(layer, torch.randn(3, 7)) == 3 * 2 * 7 * 5  # the count is for the whole batch


def test_a_convolution_costs_2_cin_cout_k2_hout_wout_flops() -> None:
    conv = nn.Conv2d(3, 4, kernel_size=3, stride=2, padding=1)  # 11 x 11 -> 6 x 6
    cin, cout, k, hout, wout = 3, 4, 3, 6, 6
    assert count_flops(conv, torch.randn(1, 3, 11, 11)) == 2 * cin * cout * k * k * hout * wout


def test_attention_is_counted_through_the_fused_inference_kernels() -> None:
    """nn.MultiheadAttention in eval mode takes a fused kernel the counter cannot see, and the CPU kernel of
    scaled_dot_product_attention has no formula in torch: both are counted, as the matrix products they are."""
    s, e = 5, 8
    attention = nn.MultiheadAttention(e, num_heads=2, batch_first=True).eval()
    expected = 2 * s * e * 3 * e + 2 * (2 * s * s * e) + 2 * s * e * e  # qkv projection, QK^T and AV, out projection
    with torch.inference_mode():  # as scoring runs it
        x = torch.randn(1, s, e)
    assert count_flops(lambda t: attention(t, t, t, need_weights=False), x) == expected
    q = torch.randn(1, 2, s, 4)
    assert count_flops(lambda t: nn.functional.scaled_dot_product_attention(t, t, t), q) == 2 * (2 * 2 * s * s * 4)


def test_parameters_are_the_sum_of_numel_each_counted_once() -> None:
    shared = nn.Linear(4, 3)
    net = nn.Sequential(shared, nn.ReLU(), nn.Conv1d(3, 2, 1))
    expected = sum(p.numel() for p in net.parameters())
    assert count_parameters([net, shared]) == expected == 4 * 3 + 3 + 3 * 2 + 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_small_process_started_by_a_large_one_reports_its_own_peak() -> None:
    """ru_maxrss of a process started by ``vfork`` + ``exec`` (Python's subprocess) counts its parent's peak: a small
    child of a large process would report the large one's memory as its own."""
    import subprocess

    ballast = np.ones(2**26)  # 512 MiB resident here, before the child starts
    code = "from detbench.kit.cost import peak_rss_bytes; print(peak_rss_bytes())"
    child = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert ballast.sum() == 2**26 and child < 400 * 2**20  # torch-free import: tens of MiB, never the 512 MiB here


def test_peak_memory_on_the_cpu_is_the_process_rss() -> None:
    peak, what = peak_memory("cpu")
    assert peak is not None and peak > 0 and what == CPU_PEAK and "ru_maxrss" in what


def test_rigid_counts_both_forwards_of_an_image(tmp_path: Path) -> None:
    """Training-free RIGID embeds each image and its noisy copy: its cost is two backbone forwards."""
    from detbench.config import apply_overrides
    from detbench.kit.detector import RunContext
    from detbench.progress import Phases
    from detbench.registry import DETECTORS

    cls = DETECTORS.get("rigid")
    detector = cls(apply_overrides(cls.Config(), dict(cls.tiny_settings)))
    ctx = RunContext(suite_root=tmp_path, suite_name="folder", device="cpu", seed=0, run_dir=tmp_path,
                     phases=Phases(enabled=False, warnings=False))
    detector.setup(ctx)
    found = detector.cost_forward(ctx, "any")
    size = cls.tiny_settings["input_size"]
    x = torch.randn(1, 3, size, size)
    one = count_flops(lambda t: detector.backbone.embed(t, detector.embedding), x)
    assert one > 0 and count_flops(found.forward, x) == 2 * one and found.trainable == 0


# ------------------------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cost") / "tree"
    build_folder(root, generators=("a", "b"), splits=("train", "test"), n=4)
    return root


@pytest.fixture(scope="module")
def pristine(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home holding one finished linear-probe run (copied by each test)."""
    home = tmp_path_factory.mktemp("cost_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DETBENCH_HOME", str(home))
        run = detbench.run("linear-probe", "folder", root=tree, protocol="train-on-a", settings=TINY, bootstrap=0,
                           workers=0)
        assert not run.reused
    return home


@pytest.fixture
def home(pristine: Path, detbench_home: Path) -> Path:
    shutil.rmtree(detbench_home)
    shutil.copytree(pristine, detbench_home)
    return detbench_home


def _run(tree: Path) -> detbench.Run:
    return detbench.run("linear-probe", "folder", root=tree, protocol="train-on-a", settings=TINY, bootstrap=0,
                        workers=0)


def test_a_run_records_its_cost_outside_its_id_and_a_reused_run_keeps_it(tree: Path, home: Path) -> None:
    from detbench.models.backbones import load_backbone

    (record_file,) = (home / "runs" / "folder" / "linear-probe").glob("*/run.json")
    record = json.loads(record_file.read_text())
    cost = record["cost"]
    assert cost["na"] == {}
    backbone = load_backbone(TINY["backbone"], device="cpu", crop=TINY["crop"])
    head = backbone.embed_dim + 1  # the probe's coefficients and intercept
    assert cost["params"] == sum(p.numel() for p in backbone.model.parameters()) + head
    assert cost["params_trainable"] == head
    assert cost["flops_input"] == [3, 32, 32]
    assert cost["flops_per_image"] == count_flops(backbone.model.eval(), torch.zeros(1, 3, 32, 32))
    assert cost["gflops_per_image"] == cost["flops_per_image"] / 1e9
    assert math.isfinite(cost["images_per_s"]) and cost["images_per_s"] > 0
    assert cost["scored_images"] == sum(c["real"] + c["fake"] for c in record["counts"]["eval"].values()) == 16
    assert cost["peak_memory_bytes"] > 0 and cost["peak_memory"] == CPU_PEAK
    assert cost["machine"]["device"] == "cpu" and cost["machine"]["cpu_count"] >= 1
    again = _run(tree)
    assert again.reused and again.record["cost"] == cost
    assert "cost" not in json.dumps(again.record["run_key"])  # the machine's numbers never enter the id


def test_the_leaderboard_shows_the_cost_and_n_a_for_runs_recorded_without_it(tree: Path, home: Path,
                                                                              tmp_path: Path) -> None:
    board = detbench.leaderboard("folder", cost=True)
    row = board.iloc[0]
    assert row["params"] > 0 and row["gflops_per_image"] > 0 and row["images_per_s"] > 0
    assert row["peak_memory_mib"] > 0 and row["peak_memory_kind"] == "RSS" and row["cost_na"] == ""
    assert row["cost_device"].startswith("cpu")
    assert "params" not in detbench.leaderboard("folder").columns  # only when asked

    shown = invoke("leaderboard", "folder", "--cost", "--csv", str(tmp_path), "--markdown", str(tmp_path / "b.md"))
    assert shown.exit_code == 0, shown.output
    gflops = f"{row['gflops_per_image']:.3g}"
    markdown = (tmp_path / "b.md").read_text()
    assert "GFLOPs/image" in markdown and gflops in markdown and "GiB RSS" in markdown
    assert "GFLOPs" in shown.output and "FLOP counter" in shown.output
    wide = (tmp_path / "folder_leaderboard.csv").read_text().splitlines()
    assert {"params", "gflops_per_image", "images_per_s", "peak_memory_mib"} <= set(wide[0].split(","))

    (record_file,) = (home / "runs" / "folder" / "linear-probe").glob("*/run.json")
    record = json.loads(record_file.read_text())
    del record["cost"]  # as a run written before cost was measured
    record_file.write_text(json.dumps(seal_record({k: v for k, v in record.items() if k != "record_sha256"})))
    old = detbench.leaderboard("folder", cost=True).iloc[0]
    assert all(math.isnan(old[c]) for c in ("params", "gflops_per_image", "images_per_s", "peak_memory_mib"))
    assert old["cost_na"] == NOT_RECORDED
    shown = invoke("leaderboard", "folder", "--cost", "--markdown", str(tmp_path / "old.md"))
    assert shown.exit_code == 0, shown.output
    markdown = (tmp_path / "old.md").read_text()
    assert "| n/a | n/a | n/a | n/a | n/a |" in markdown and NOT_RECORDED in markdown.replace("\n", " ")


def test_the_report_shows_the_cost_table(home: Path, tmp_path: Path) -> None:
    from detbench.results.html import build_report

    page = build_report("folder", tmp_path / "report").read_text()
    cost = page.split("<h3>Cost of each run")[1].split("</table>")[0]
    assert "<table class=\"leaderboard cost\">" in cost and "GFLOPs/image" in cost and "GiB RSS" in cost
    assert "<th>cost</th><td>params " in page  # in each run's facts too

