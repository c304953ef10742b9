"""The shared classifier training loop: the originals' schedules, determinism, kept state, failures, and resume
after a real SIGKILL (through the CLI, with NPR and CNNSpot on a tiny demo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fault_points import finish, launch
from PIL import Image
from torch import nn

from detbench.data.preprocess import imagenet_tensor
from detbench.engine.runner import Runner, RunRequest
from detbench.errors import DataError, DetbenchWarning
from detbench.kit.detector import RunContext
from detbench.kit.schedules import CosineSchedule, PlateauSchedule, StepDecaySchedule
from detbench.kit.training import CHECKPOINT, TrainSetup, bce_with_logits, train_classifier
from detbench.progress import quiet

# ------------------------------------------------------------------------------------------------ schedules


def test_plateau_schedule_is_cnndetections_early_stopping() -> None:
    s = PlateauSchedule(1e-4, patience=2, delta=0.001, delta_after=0.002, min_lr=1e-6)
    keeps, lrs = [], []
    # 0.5 kept; 0.5005 < 0.5 + 0.001: no gain; 0.502 kept; two without gain -> lr / 10, fresh stopper keeps
    # its first epoch (0.40, although worse); 0.4015 < 0.40 + 0.002 (delta after a drop) ...
    for acc in (0.5, 0.5005, 0.502, 0.502, 0.5025, 0.40, 0.4015, 0.401):
        out = s.end_epoch(0, {"acc": acc})
        keeps.append(out.keep)
        lrs.append(s.lr(0, 0, 1))
        assert not out.stop
    assert keeps == [True, False, True, False, False, True, False, False]
    assert lrs[:4] == [1e-4] * 4 and lrs[4] == lrs[5] == 1e-4 / 10 and lrs[7] == 1e-4 / 10 / 10
    # 1e-4 / 10 / 10 is not below 1e-6 in floats either, so the original trains a third phase ...
    assert s.end_epoch(0, {"acc": 0.3}).keep
    s.end_epoch(0, {"acc": 0.3})
    final = s.end_epoch(0, {"acc": 0.3})
    assert final.stop and not final.keep and "below" in final.note  # ... and stops at the next drop

    state = s.state_dict()
    again = PlateauSchedule(1.0, patience=9, delta=0, delta_after=0)
    again.load_state_dict(json.loads(json.dumps(state)))
    assert again.state_dict() == state
    assert PlateauSchedule(1e-3, patience=1, delta=0, delta_after=0).end_epoch(0, {"acc": float("nan")}).keep


def test_step_decay_is_nprs_schedule() -> None:
    s = StepDecaySchedule(2e-4, every=10, factor=0.9)
    lrs = []
    for epoch in range(25):
        lrs.append(s.lr(0, epoch, 1))
        assert s.end_epoch(epoch, {}).keep
    assert lrs[:11] == [2e-4] * 11  # decays after the 0-based epochs 10 and 20
    assert lrs[11] == pytest.approx(2e-4 * 0.9) and lrs[21] == pytest.approx(2e-4 * 0.81)


def test_cosine_schedule() -> None:
    s = CosineSchedule(1e-4, epochs=4, min_lr=1e-6, warmup_epochs=1)
    assert s.lr(0, 0, 10) == 0 and s.lr(5, 0, 10) == pytest.approx(5e-5)
    assert s.lr(10, 1, 10) == pytest.approx(1e-4) and s.lr(40, 4, 10) == pytest.approx(1e-6)
    assert [s.end_epoch(e, {"acc": a}).keep for e, a in enumerate((0.6, 0.6, 0.7, 0.65))] == [True, False, True, False]


# ------------------------------------------------------------------------------------------------ the loop


@pytest.fixture(scope="module")
def image_rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """20 small PNGs: smooth 'real' ramps, noisy 'fake' ones, and one unreadable file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(20):
        label = i % 2
        ramp = np.linspace(0, 255, 24)[None, :, None] * np.ones((24, 1, 3))
        img = ramp + (rng.normal(0, 60, (24, 24, 3)) if label else 0)
        path = f"{label}/img_{i:02d}.png"
        (root / str(label)).mkdir(exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / path)
        rows.append({"path": path, "label": label, "image_id": f"id{i}"})
    (root / "0" / "broken.png").write_bytes(b"not a png")
    rows.append({"path": "0/broken.png", "label": 0, "image_id": "broken"})
    return root, pd.DataFrame(rows)


class RandomFlip:
    """A seeded training transform: flip with the image's own generator."""

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        x = imagenet_tensor()(img)
        return x.flip(-1) if rng.random() < 0.5 else x


def tiny_setup(seed: int, keep: str = "best", epochs: int = 4) -> TrainSetup:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    return TrainSetup(model=model, optimizer=optimizer, schedule=StepDecaySchedule(0.05, every=2, factor=0.5),
                      train_transform=RandomFlip(), heldout_transform=imagenet_tensor(), loss=bce_with_logits,
                      probabilities=lambda z: 1 / (1 + np.exp(-z)), epochs=epochs, batch_size=6, keep=keep,
                      checkpoint_every=0, name="tiny")


def context(root: Path, run_dir: Path, seed: int = 0) -> RunContext:
    return RunContext(suite_root=root, suite_name="t", device="cpu", seed=seed, run_dir=run_dir, phases=quiet(),
                      workers=0)


def test_training_is_seeded_records_failures_and_keeps_the_last_state(image_rows, tmp_path: Path,
                                                                      one_thread) -> None:
    root, rows = image_rows
    held = rows.iloc[16:18]
    train = rows.drop(index=held.index)  # 19 rows, the unreadable one included
    a, b = tiny_setup(1, keep="last"), tiny_setup(1, keep="last")
    facts = train_classifier(a, train.sample(frac=1, random_state=0), held, context(root, tmp_path / "a"))
    train_classifier(b, train, held, context(root, tmp_path / "b"))  # row order does not matter
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert facts["epochs_run"] == 4 and facts["steps"] == 4 * 4 and facts["kept_epoch"] == 4
    assert facts["train_failures"] == 1 and facts["train_failure_reasons"] == {"undecodable": 1}
    assert [h["lr"] for h in facts["history"]] == [0.05, 0.05, 0.05, 0.025]
    assert all(np.isfinite(h["heldout_loss"]) for h in facts["history"])
    assert not (tmp_path / "a" / "checkpoints" / CHECKPOINT).exists()

    c = tiny_setup(1, keep="last")
    train_classifier(c, train, held, context(root, tmp_path / "c", seed=2))
    assert not torch.equal(c.model[0].weight, a.model[0].weight)  # another run seed, another run


def test_keep_best_restores_the_kept_epoch(image_rows, tmp_path: Path) -> None:
    root, rows = image_rows

    class KeepFirst(StepDecaySchedule):
        def end_epoch(self, epoch, heldout):
            out = super().end_epoch(epoch, heldout)
            return type(out)(keep=epoch == 0, stop=epoch == 2, note="stop" if epoch == 2 else "")

    setup = tiny_setup(3, keep="best")
    setup.schedule = KeepFirst(0.05, every=0, factor=1.0)
    setup.checkpoint_every = 1
    snapshots = []
    original = setup.optimizer.step

    def step_and_snapshot(*args, **kwargs):
        out = original(*args, **kwargs)
        snapshots.append({k: v.clone() for k, v in setup.model.state_dict().items()})
        return out

    setup.optimizer.step = step_and_snapshot
    facts = train_classifier(setup, rows.iloc[:-1], rows.iloc[:4], context(root, tmp_path))
    assert facts["epochs_run"] == 3 and facts["stopped"] == "stop" and facts["kept_epoch"] == 1
    steps_per_epoch = facts["steps_per_epoch"]
    for name, value in setup.model.state_dict().items():  # the state at the end of epoch 1
        assert torch.equal(value, snapshots[steps_per_epoch - 1][name]), name


def test_drop_last_drops_the_incomplete_batch_and_refuses_too_few_rows(image_rows, tmp_path: Path) -> None:
    root, rows = image_rows
    setup = tiny_setup(4, keep="last", epochs=2)
    setup.drop_last, setup.checkpoint_every = True, 0
    seen = []
    original = setup.model.forward
    setup.model.forward = lambda x: seen.append(len(x)) or original(x)
    facts = train_classifier(setup, rows.iloc[:-1], rows.iloc[:0], context(root, tmp_path))  # 20 rows, batch 6
    assert facts["steps_per_epoch"] == 3 and facts["steps"] == 6 and seen == [6] * 6
    too_few = tiny_setup(4)
    too_few.drop_last = True
    with pytest.raises(DataError, match="do not fill one batch of 6"):
        train_classifier(too_few, rows.iloc[:5], rows.iloc[:0], context(root, tmp_path / "b"))


# ------------------------------------------------------------------------------------------------ kill / resume

# 4 steps per epoch; the demo profile decays the learning rate after every 2nd epoch, so the resumed run (from step
# 4) goes through a decay
NPR_RESUME = ["suite.n_train=8", "suite.n_val=2", "suite.size=48", "load_size=48", "crop_size=32",
              "train_batch_size=4", "epochs=4", "checkpoint_every=2", "batch_size=16"]


@pytest.fixture
def one_thread():
    """Tiny networks train fastest on one CPU thread (and a shared 2-core machine makes two threads spin)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sigkill_mid_training_then_resume_matches_an_uninterrupted_run(tmp_path: Path, monkeypatch,
                                                                        one_thread) -> None:
    killed = tmp_path / "killed"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = ["run", "npr", "--suite", "demo", "--workers", "0", "--quiet"]
    args += [f"--set={item}" for item in NPR_RESUME]
    # SIGKILL just before the 3rd checkpoint (step 6) is written: the 2nd (step 4) is on disk, two steps are lost
    code, output = finish(launch(killed, "train-checkpoint:3", args=args))
    assert code == -signal.SIGKILL, f"the kill point was never reached (exit {code})\n{output[-2000:]}"
    [ckpt] = killed.glob(f"runs/demo/npr/fits/*/checkpoints/{CHECKPOINT}")
    assert not (ckpt.parent.parent / "fit.json").exists()

    over = dict(item.split("=", 1) for item in NPR_RESUME)
    monkeypatch.setenv("DETBENCH_HOME", str(killed))
    resumed = Runner(quiet()).run(RunRequest("npr", "demo", overrides=over, workers=0))
    monkeypatch.setenv("DETBENCH_HOME", str(tmp_path / "clean"))
    clean = Runner(quiet()).run(RunRequest("npr", "demo", overrides=over, workers=1))
    assert resumed.record["fit"]["resumed_from_step"] == 4 and clean.record["fit"]["resumed_from_step"] is None
    assert resumed.record["run_id"] == clean.record["run_id"]
    # NPR's train.py trains on every training image: nothing held out (recorded), no NaN held-out columns
    assert clean.record["holdout"] == {"setting": "0", "chosen_by": "npr's original", "used": "0"}
    assert clean.record["counts"]["heldout"] == 0 and clean.record["fit"]["n_heldout"] == 0
    assert not any(k.startswith("heldout_") for k in clean.record["fit"]["history"][0])
    a = pd.read_parquet(resumed.path / "scores.parquet")
    b = pd.read_parquet(clean.path / "scores.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-6)
    for got, want in zip(resumed.record["fit"]["history"], clean.record["fit"]["history"], strict=True):
        numbers = {k for k, v in want.items() if isinstance(v, float)}
        assert {k: got[k] for k in numbers} == pytest.approx({k: want[k] for k in numbers}, rel=1e-4, abs=1e-6)
        assert {k: v for k, v in got.items() if k not in numbers} == {k: v for k, v in want.items() if k not in numbers}


def test_cnnspot_trains_from_a_recorded_stand_in_with_the_plateau_schedule(detbench_home: Path,
                                                                           one_thread) -> None:
    over = {"suite.n_train": "6", "suite.n_val": "2", "suite.size": "48", "load_size": "48", "crop": "32",
            "train_batch_size": "4", "max_epochs": "3", "patience": "1", "batch_size": "16", "eval_crop": "0"}
    with pytest.warns(DetbenchWarning, match=r"train\.holdout=val-split \(cnnspot's original\): the val split is the "
                      "evaluation split"):
        result = Runner(quiet()).run(RunRequest("cnnspot", "demo", overrides=over, workers=0))
    holdout = result.record["holdout"]  # the demo has no val split apart from its evaluation data: 10 %, recorded
    assert (holdout["setting"], holdout["used"], holdout["chosen_by"]) == ("val-split", "0.1", "cnnspot's original")
    assert "evaluation split of protocol composite" in holdout["fallback"] and result.record["counts"]["heldout"] == 2
    assert "heldout_split" not in result.record["key"]["protocol"]  # the same fit as the 10 % before
    fit = result.record["fit"]
    assert fit["trained"] and fit["init"] == "random" and "stand-in" in fit["init_note"]
    assert result.record["key"]["detector_identity"]["init"] == "random"
    assert fit["schedule"]["kind"] == "PlateauSchedule" and fit["epochs_run"] <= 3
    assert fit["history"][0]["kept"] and 1 <= fit["kept_epoch"] <= fit["epochs_run"]
    assert result.record["key"]["detector_identity"]["eval_preprocessing"]["crop"] == "none (native size)"
    scores = pd.read_parquet(result.path / "scores.parquet")
    assert (scores["status"] == "ok").all() and scores["score"].between(0, 1).all()


@pytest.mark.slow
def test_two_process_training_runs_under_torchrun(tmp_path: Path) -> None:
    """``--nproc 2``: DDP over gloo, each rank a slice of every batch; rank 0 checkpoints and saves, both score."""
    args = [sys.executable, "-m", "detbench", "run", "npr", "--suite", "demo", "--workers", "0", "--quiet",
            "--nproc", "2"]
    for item in [*NPR_RESUME[:-3], "epochs=2", "checkpoint_every=3", "batch_size=16"]:
        args += ["--set", item]
    env = {**os.environ, "DETBENCH_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    [run_json] = list(tmp_path.glob("runs/demo/npr/*/run.json"))
    record = json.loads(run_json.read_text())
    assert record["environment"]["world_size"] == 2 and record["fit"]["epochs_run"] == 2
    assert record["fit"]["steps"] == 2 * record["fit"]["steps_per_epoch"]
    scores = pd.read_parquet(run_json.parent / "scores.parquet")
    assert (scores["status"] == "ok").all() and scores["score"].between(0, 1).all()


# ------------------------------------------------------------------------------------- which images select (holdout)


def test_holdout_setting_parses_and_refuses_bad_values() -> None:
    from detbench.engine.holdout import parse_holdout
    from detbench.engine.resolve import resolve
    from detbench.errors import ConfigError

    assert parse_holdout("0.1").fraction == 0.1 and parse_holdout("0.1").split is None
    assert parse_holdout("0").label == parse_holdout("none").label == "0"
    assert parse_holdout(" Val-Split ").split == "val" and parse_holdout("val").label == "val-split"
    for bad in ("1", "-0.1", "nan", "half", "1.5"):
        with pytest.raises(ConfigError, match=r"train\.holdout must be a fraction in \[0, 1\)"):
            parse_holdout(bad)
    with pytest.raises(ConfigError, match="train.holdout must be"):
        resolve(RunRequest("npr", "demo", overrides={"train.holdout": "most"}))
    with pytest.raises(ConfigError, match=r"unknown training setting 'train\.epochs'.*train\.holdout"):
        resolve(RunRequest("npr", "demo", overrides={"train.epochs": "3"}))
    chosen = resolve(RunRequest("npr", "demo", overrides={"train.holdout": "VAL"}))
    assert chosen.holdout == "val-split" and chosen.settings == {"train.holdout": "val-split"}  # shown by leaderboards


def _rows(**splits: tuple[int, int]) -> pd.DataFrame:
    """Index rows of generator ``g``: ``split -> (real, fake)`` usable images."""
    out = []
    for split, counts in splits.items():
        for label, n in enumerate(counts):
            out += [{"path": f"g/{split}/{label}/{i}.png", "generator": "g", "split": split, "label": label,
                     "status": "ok"} for i in range(n)]
    return pd.DataFrame(out)


def test_val_split_is_used_where_it_is_not_evaluation_data_and_the_fallback_is_recorded() -> None:
    from detbench.data.suites import Protocol
    from detbench.engine.holdout import apply_holdout

    base = Protocol(name="p", train_generators=("g",), eval_generators=("other",), eval_split="test")
    rows = _rows(train=(10, 10), val=(3, 2))
    chosen, facts = apply_holdout(base, rows, "val-split", "cnnspot's original")
    assert (chosen.heldout_split, chosen.heldout_fraction) == ("val", 0.0)
    assert facts == {"setting": "val-split", "chosen_by": "cnnspot's original", "used": "val-split"}
    assert chosen.to_dict()["heldout_split"] == "val"

    nothing, facts = apply_holdout(base, rows, "0", "--set train.holdout")
    assert (nothing.heldout_split, nothing.heldout_fraction) == (None, 0.0) and facts["used"] == "0"
    assert "heldout_split" not in nothing.to_dict()  # fit ids of protocols that never set it stay as they were
    assert apply_holdout(base, rows, None, "x") == (base, {"setting": "0.1", "chosen_by": "suite", "used": "0.1"})
    assert apply_holdout(base, rows, None, "x")[0].to_dict() == base.to_dict()

    evaluated_val = Protocol(name="genimage-like", train_generators=("g",), eval_split="val")
    fallen, facts = apply_holdout(evaluated_val, rows, "val-split", "aide's original")
    assert fallen.to_dict() == evaluated_val.to_dict()  # the protocol's own 10 %: the same fit as before
    assert facts["used"] == "0.1" and "evaluation split" in facts["fallback"]
    for missing, why in ((_rows(train=(10, 10)), "no usable val images"),
                         (_rows(train=(10, 10), val=(3, 0)), "3 usable real and 0 usable fake")):
        fallen, facts = apply_holdout(base, missing, "val-split", "x")
        assert fallen.heldout_fraction == 0.1 and fallen.heldout_split is None and why in facts["fallback"]
    cross = Protocol(name="c", train_generators=(), train_suite="universalfakedetect")
    assert apply_holdout(cross, rows, "0", "x") == (cross, None)  # its training suite's protocol is chosen instead


@pytest.fixture(scope="module")
def ufd_with_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A UniversalFakeDetect replica with CNNDetection's val/progan split (1 image per class and label)."""
    from replicas import build_ufd

    return build_ufd(tmp_path_factory.mktemp("ufd") / "ufd", n=2, extras=False, defects=False, val_n=1).root


def _plan(detector: str, root: Path, threshold: str = "0.5", **over: str):
    from detbench.engine.plan import plan_run

    return plan_run(RunRequest(detector, "universalfakedetect", root=root, overrides=over, threshold=threshold),
                    quiet())


def test_npr_trains_on_every_training_image_as_its_original(ufd_with_val: Path) -> None:
    """Regression: NPR held out 10 % of its training generator; ``train.py`` trains on all of it (last epoch)."""
    from detbench.errors import ProtocolError

    plan = _plan("npr", ufd_with_val)
    assert len(plan.train) == 4 * 2 * 2 and plan.heldout.empty  # progan-4class: 4 classes x 2 labels x 2 images
    assert plan.holdout == {"setting": "0", "chosen_by": "npr's original", "used": "0"}
    assert plan.fit_key["protocol"]["heldout_fraction"] == 0.0 and "heldout_split" not in plan.fit_key["protocol"]
    carved = _plan("npr", ufd_with_val, **{"train.holdout": "0.1"})
    assert len(carved.train) + len(carved.heldout) == 16 and len(carved.heldout) == 2
    assert carved.fit_id != plan.fit_id and carved.resolved.settings == {"train.holdout": "0.1"}
    logged = _plan("npr", ufd_with_val, **{"train.holdout": "val-split"})
    assert len(logged.train) == 16 and set(logged.heldout["split"]) == {"val"} and len(logged.heldout) == 8
    with pytest.raises(ProtocolError, match=r"calibrates on held-out images.*train\.holdout=0, npr's original"):
        _plan("npr", ufd_with_val, threshold="calibrated")


def test_cnnspot_selects_on_the_separate_val_split_as_cnndetection(ufd_with_val: Path) -> None:
    """Regression: CNNSpot held out 10 % of its training generator; ``train.py`` validates on ``<dataroot>/val``."""
    plan = _plan("cnnspot", ufd_with_val, init="random")
    assert len(plan.train) == 16 and set(plan.train["split"]) == {"train"}
    assert len(plan.heldout) == 8 and set(plan.heldout["split"]) == {"val"}
    assert set(plan.heldout["generator"]) == {f"progan-{c}" for c in ("car", "cat", "chair", "horse")}
    assert plan.holdout == {"setting": "val-split", "chosen_by": "cnnspot's original", "used": "val-split"}
    assert plan.fit_key["protocol"]["heldout_split"] == "val" and plan.fit_key["protocol"]["heldout_fraction"] == 0


def test_detectors_that_select_on_held_out_images_refuse_none_before_any_work(ufd_with_val: Path) -> None:
    from detbench.errors import ProtocolError

    with pytest.raises(ProtocolError, match=r"linear-probe chooses its model on held-out images.*train\.holdout=0"):
        _plan("linear-probe", ufd_with_val, backbone="timm:efficientnet_lite0@bundled", **{"train.holdout": "0"})
