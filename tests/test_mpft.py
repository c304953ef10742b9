"""MPFT detector: trainable set, masking only in training, determinism, state, resume after SIGKILL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fault_points import launch, wait_parked
from PIL import Image

from detbench.config import ConfigError, apply_overrides, to_dict
from detbench.detectors.mpft import MPFT, MPFTConfig
from detbench.detectors.mpft_train import CHECKPOINT, class_stream, lr_factor
from detbench.engine.resolve import RunRequest, resolve
from detbench.kit.detector import RunContext
from detbench.models.weights import WeightsError
from detbench.progress import quiet
from detbench.registry import DETECTORS
from detbench.store import content_hash

if "mpft" not in DETECTORS:
    DETECTORS.register_lazy("mpft", "detbench.detectors.mpft:MPFT", "Masked partial fine-tuning with TAM.")

TINY = "open_clip:detbench-tiny-vit@random"
FAST = {"backbone": TINY, "k": 2, "batch_size": 4, "steps": 2, "eval_every": 2, "checkpoint_every": 0,
        "train_per_class": 0, "lr_backbone": 1e-3, "lr_head": 1e-2, "warmup": 0.0}


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """12 small PNGs: smooth 'real' gradients and noisy 'fake' images, plus one corrupt file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        label = i % 2
        ramp = np.linspace(0, 255, 40)[None, :, None] * np.ones((40, 1, 3))
        img = ramp + (rng.normal(0, 40, (40, 40, 3)) if label else 0)
        path = f"{label}/img_{i:02d}.png"
        (root / str(label)).mkdir(exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / path)
        rows.append({"path": path, "label": label, "image_id": f"id{i}", "generator": "g", "split": "train",
                     "status": "ok"})
    (root / "0" / "broken.png").write_bytes(b"not a png")
    rows.append({"path": "0/broken.png", "label": 0, "image_id": "idb", "generator": "g", "split": "train",
                 "status": "ok"})
    return root, pd.DataFrame(rows)


def make(tmp: Path, root: Path, seed: int = 0, **overrides: object) -> tuple[MPFT, RunContext]:
    cfg = apply_overrides(MPFTConfig(), {**FAST, **overrides})
    ctx = RunContext(suite_root=root, suite_name="test", device="cpu", seed=seed, run_dir=tmp, phases=quiet(),
                     workers=0)
    det = MPFT(cfg)
    det.setup(ctx)
    return det, ctx


def split(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    held = rows.iloc[[0, 1]]
    return rows.drop(index=held.index), held


def state(det: MPFT) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in det.net.named_parameters()}


def batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.randn(n, 3, 224, 224, generator=g), torch.tensor([0, 1] * (n // 2))


# ------------------------------------------------------------------------------------------- config


def test_config_validation() -> None:
    for bad in ({"batch_size": "31"}, {"k": "0"}, {"warmup": "1"}, {"mask.ratio": "1.01"}, {"mask.ratio": "-0.1"},
                {"trainable": "adapter"}, {"steps": "0", "epochs": "0"}, {"lr_head": "1e309"}, {"lr_head": "nan"},
                {"crop": "-1"}, {"batch_size": "0"}):
        with pytest.raises(ConfigError):
            apply_overrides(MPFTConfig(), bad)


@pytest.mark.parametrize("fill", ["zero", "token", "drop"])
def test_mask_ratio_one_is_accepted_and_trains(tmp_path: Path, fill: str) -> None:
    """The README documents mask.ratio in [0, 1]: 1 masks every patch (a degenerate but valid ablation)."""
    det, _ = make(tmp_path, tmp_path, **{"mask.ratio": "1.0", "mask.fill": fill})
    x, y = batch()
    mask = det.make_mask(x, torch.Generator().manual_seed(0))
    assert bool(mask.all())
    assert np.isfinite(det.batch_loss(x, y, torch.Generator().manual_seed(0)).item())


def test_ablation_switches_give_distinct_run_keys() -> None:
    def key(**over: str) -> str:
        resolved = resolve(RunRequest("mpft", "demo", overrides=over))
        return content_hash(to_dict(resolved.config))

    base = resolve(RunRequest("mpft", "demo")).config
    assert base.backbone == "timm:efficientnet_lite0@bundled" and base.mask.grid == 16 and base.steps == 30
    ablations = [{}, {"mask.strategy": "random"}, {"mask.strategy": "inverse"}, {"mask.ratio": "0.2"},
                 {"mask.operator": "sobel"}, {"mask.fill": "token"}, {"trainable": "full"}, {"k": "1"},
                 {"train_per_class": "50"}, {"mask.strategy": "none"}]
    keys = [key(**a) for a in ablations]
    assert len(set(keys)) == len(keys)


def test_schedule_and_sampler() -> None:
    assert [round(lr_factor(s, 10, 0.2), 3) for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 0.038]
    first, second = class_stream(5, 0, 1, 0, 5), class_stream(5, 0, 1, 5, 5)
    assert sorted(first) == sorted(second) == list(range(5))  # every pass covers every image once
    assert np.array_equal(class_stream(5, 0, 1, 3, 4), np.concatenate([first[3:], second[:2]]))


# --------------------------------------------------------------------------------------------- setup


@pytest.mark.parametrize(("arch", "side"), [("detbench-tiny-vit14", 16), ("detbench-tiny-vit", 14),
                                            ("detbench-tiny-vit32", 7)])
def test_vit_mask_on_patch_grid(tmp_path: Path, arch: str, side: int) -> None:
    det, _ = make(tmp_path, tmp_path, backbone=f"open_clip:{arch}@random")
    mask = det.make_mask(torch.randn(2, 3, 224, 224), torch.Generator().manual_seed(0))
    assert mask.shape == (2, side, side)
    assert mask.sum(dim=(1, 2)).tolist() == [round(0.4 * side * side + 1e-9)] * 2


def test_cnn_demo_backbone_grid_and_trainable_set(tmp_path: Path) -> None:
    cnn = {"backbone": "timm:efficientnet_lite0@bundled", "crop": 128, "k": 2, "mask.grid": 16}
    det, _ = make(tmp_path, tmp_path, **cnn)
    mask = det.make_mask(torch.randn(2, 3, 128, 128), torch.Generator().manual_seed(0))
    assert mask.shape == (2, 8, 8) and mask.sum(dim=(1, 2)).tolist() == [26, 26]
    prefixes = {".".join(n.split(".")[:3]) for n in det.trainable_names}
    assert prefixes == {"backbone.blocks.5", "backbone.blocks.6", "backbone.conv_head.weight",
                        "backbone.bn2.weight", "backbone.bn2.bias", "head.weight", "head.bias"}
    with pytest.raises(ConfigError, match="open_clip ViTs only"):
        make(tmp_path, tmp_path, **cnn, **{"mask.fill": "token"})


def test_missing_weights_fail_in_setup(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="ViT-B-32"):
        make(tmp_path, tmp_path, backbone="open_clip:ViT-B-32@openai")


def test_lora_starts_from_the_pretrained_function(tmp_path: Path) -> None:
    plain, _ = make(tmp_path, tmp_path)
    lora, _ = make(tmp_path, tmp_path, trainable="lora", lora_rank=4)
    x, _ = batch(2)
    with torch.no_grad():
        assert torch.allclose(plain.backbone.embed(x), lora.backbone.embed(x), atol=1e-5)
    names = lora.trainable_names
    assert any("resblocks.3.attn.parametrizations.in_proj_weight.0.lora_b" in n for n in names)
    assert not any("resblocks.1." in n for n in names)
    assert not any(n.endswith(".original") for n in names)


# ------------------------------------------------------------------------------------- loss and masks


def test_ratio_zero_equals_unmasked_fine_tuning(tmp_path: Path) -> None:
    x, y = batch()
    losses = {}
    for name, over in {"none": {"mask.strategy": "none"}, "ratio0": {"mask.ratio": 0.0},
                       "tam": {}, "random": {"mask.strategy": "random"}}.items():
        det, _ = make(tmp_path, tmp_path, **over)
        losses[name] = det.batch_loss(x, y, torch.Generator().manual_seed(0)).item()
    assert losses["ratio0"] == losses["none"]
    assert losses["tam"] != losses["none"] and losses["random"] != losses["tam"]


def test_drop_fill_with_unmasked_images_in_the_batch(tmp_path: Path) -> None:
    det, _ = make(tmp_path, tmp_path, **{"mask.fill": "drop", "mask.p_unmasked": 0.5})
    x, y = batch(8)
    gen = torch.Generator().manual_seed(1)
    counts = det.make_mask(x, torch.Generator().manual_seed(1)).sum(dim=(1, 2))
    assert 0 in counts.tolist() and int(counts.max()) > 0
    loss = det.batch_loss(x, y, gen)
    loss.backward()
    assert torch.isfinite(loss) and det.net["head"].weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------ training


def test_step_changes_trainable_only_and_reports_failures(tmp_path: Path, image_root) -> None:
    root, rows = image_root
    det, ctx = make(tmp_path, root, steps=3, eval_every=3)  # 3 steps x 2 reals: a full pass, broken file too
    before = state(det)
    info = det.fit(*split(rows), ctx)
    after = state(det)
    trainable = set(det.trainable_names)
    assert trainable and set(after) - trainable
    for name, tensor in after.items():
        if name in trainable:
            assert not torch.equal(tensor, before[name]), name
        else:
            assert torch.equal(tensor, before[name]), name
    assert info["train_failures"] == 1 and info["train_failure_reasons"]
    assert info["steps"] == 3 and info["best_step"] == 3
    assert not (ctx.checkpoint_dir() / CHECKPOINT).exists()


def test_lora_training_keeps_pretrained_weights(tmp_path: Path, image_root) -> None:
    root, rows = image_root
    det, ctx = make(tmp_path, root, trainable="lora", lora_rank=2)
    before = state(det)
    det.fit(*split(rows), ctx)
    after = state(det)
    originals = [n for n in after if n.endswith(".original")]
    assert originals and all(torch.equal(after[n], before[n]) for n in originals)
    assert any(not torch.equal(after[n], before[n]) for n in after if n.endswith("lora_b"))


def test_same_seed_same_result_and_eval_is_unmasked(tmp_path: Path, image_root) -> None:
    root, rows = image_root
    train, held = split(rows)
    results = []
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        det, ctx = make(tmp_path / run, root, seed=seed, **{"mask.strategy": "random"})
        det.fit(train, held, ctx)
        results.append((det, ctx))
    a, b, c = (state(d) for d, _ in results)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in results[0][0].trainable_names)
    det, ctx = results[0]
    twice = pd.concat([rows.iloc[[3, 3, 4]]], ignore_index=True)
    first, failures = det.predict(twice, ctx)
    second, _ = det.predict(twice, ctx)
    assert not failures and np.array_equal(first, second)
    # The same image at two batch positions: oneDNN's CPU kernels may differ in the last bits by position.
    assert first[0] == pytest.approx(first[1], rel=1e-6)
    scores, failures = det.predict(rows.iloc[[12, 2]], ctx)
    assert list(failures) == [0] and np.isnan(scores[0]) and np.isfinite(scores[1])


def test_save_load_strict(tmp_path: Path, image_root) -> None:
    from safetensors.torch import load_file, save_file

    root, rows = image_root
    det, ctx = make(tmp_path, root, steps=1, eval_every=1)
    det.fit(*split(rows), ctx)
    det.save(tmp_path / "state")
    fresh, _ = make(tmp_path, root, steps=1, eval_every=1)
    fresh.load(tmp_path / "state")
    assert np.array_equal(fresh.predict(rows.iloc[:4], ctx)[0], det.predict(rows.iloc[:4], ctx)[0])
    other, _ = make(tmp_path, root, k=1)
    with pytest.raises(RuntimeError, match="missing"):
        other.load(tmp_path / "state")
    tensors = load_file(str(tmp_path / "state" / "mpft.safetensors"))
    tensors["head.extra"] = torch.zeros(1)
    save_file(tensors, str(tmp_path / "state" / "mpft.safetensors"))
    with pytest.raises(RuntimeError, match="unexpected"):
        fresh.load(tmp_path / "state")


# -------------------------------------------------------------------------------------- kill / resume

RESUME_SET = ["suite.n_train=6", "suite.n_val=2", "suite.size=48", f"backbone={TINY}", "crop=0", "k=1",
              "steps=30", "batch_size=4", "eval_every=5", "checkpoint_every=3", "eval_batch_size=16"]


def test_sigkill_mid_training_then_resume_gives_identical_scores(tmp_path: Path, monkeypatch) -> None:
    """A real SIGKILL once the first checkpoint is saved (the process parks there: no race with training finishing);
    the rerun resumes and matches an uninterrupted run."""
    from detbench.engine.runner import Runner

    killed_home, marker = tmp_path / "killed", tmp_path / "parked"
    args = ["run", "mpft", "--suite", "demo", "--workers", "0", "--quiet", *[f"--set={s}" for s in RESUME_SET]]
    proc = launch(killed_home, "mpft-checkpoint", marker=marker, args=args)
    wait_parked(proc, marker)
    proc.kill()
    proc.wait()
    (ckpt,) = killed_home.glob(f"runs/demo/mpft/fits/*/checkpoints/{CHECKPOINT}")
    fit_dir = ckpt.parent.parent
    assert not (fit_dir / "fit.json").exists()

    over = dict(item.split("=", 1) for item in RESUME_SET)
    monkeypatch.setenv("DETBENCH_HOME", str(killed_home))
    resumed = Runner(quiet()).run(RunRequest("mpft", "demo", overrides=over, workers=0))
    assert resumed.record["fit"]["resumed_from_step"] > 0
    monkeypatch.setenv("DETBENCH_HOME", str(tmp_path / "clean"))
    clean = Runner(quiet()).run(RunRequest("mpft", "demo", overrides=over, workers=1))
    assert clean.record["fit"]["resumed_from_step"] is None
    a = pd.read_parquet(resumed.path / "scores.parquet")
    b = pd.read_parquet(clean.path / "scores.parquet")
    assert resumed.record["run_id"] == clean.record["run_id"]
    # Equal to float rounding: on some CPUs (AVX-512 oneDNN) a resumed process's kernels differ in the last bits.
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-7)
    resumed_history, clean_history = resumed.record["fit"]["history"], clean.record["fit"]["history"]
    assert [h["step"] for h in resumed_history] == [h["step"] for h in clean_history]
    for got, want in zip(resumed_history, clean_history, strict=True):
        assert got == pytest.approx(want, rel=1e-5)


def test_no_usable_heldout_image_keeps_the_latest_state(tmp_path: Path, image_root) -> None:
    """Regression: the held-out log line formatted None (no usable held-out image) and raised TypeError, although
    the code meant to keep the latest state."""
    root, rows = image_root
    det, ctx = make(tmp_path, root)
    info = det.fit(rows.iloc[:12], rows.iloc[[12]], ctx)  # the only held-out image is the broken file
    assert info["best_step"] == 2 and info["heldout_failures"] == 1
    assert info["best_heldout"]["heldout_ap"] is None


def test_a_diverging_training_is_a_clear_error(tmp_path: Path, image_root) -> None:
    """Regression: huge learning rates made the loss NaN and ended in the held-out log's TypeError."""
    from detbench.errors import TrainingError

    root, rows = image_root
    det, ctx = make(tmp_path, root, lr_backbone=1e36, lr_head=1e36, grad_clip=0.0, steps=4, eval_every=4)
    with pytest.raises(TrainingError, match="training loss became .* lower the learning rates"):
        det.fit(*split(rows), ctx)
