"""Tests for the embedded demo-suite builder (tiny builds only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detbench.datasets import demo_build
from detbench.datasets.demo_build import BUILDER_VERSION, FAMILIES, build_demo

TINY = {"n_train": 4, "n_val": 2, "size": 64}


def _pngs(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*.png"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[tuple[int, int]]]:
    root = tmp_path_factory.mktemp("demo_a")
    calls: list[tuple[int, int]] = []
    summary = build_demo(root, seed=0, progress=lambda d, t: calls.append((d, t)), **TINY)
    return root, summary, calls


def test_families_are_distinct_and_described() -> None:
    assert len(FAMILIES) >= 4
    assert all(isinstance(v, str) and v for v in FAMILIES.values())
    assert len(set(FAMILIES.values())) == len(FAMILIES)


def test_layout_and_counts(tiny: tuple[Path, dict, list]) -> None:
    root, summary, _ = tiny
    expected = sorted(
        Path(fam, split, label, f"{fam}_{split}_{label}_{i:05d}.png")
        for fam in FAMILIES
        for split, n in (("train", 4), ("val", 2))
        for label in ("0_real", "1_fake")
        for i in range(n)
    )
    assert _pngs(root) == expected
    assert sorted(p.name for p in root.iterdir()) == sorted([*FAMILIES, "BUILD.json"])
    assert summary["total_images"] == len(expected) == len(FAMILIES) * 12
    per_class = {"train": {"0_real": 4, "1_fake": 4}, "val": {"0_real": 2, "1_fake": 2}}
    assert summary["counts"] == {fam: per_class for fam in FAMILIES}


def test_pngs_are_rgb_at_size(tiny: tuple[Path, dict, list]) -> None:
    root, _, _ = tiny
    for rel in _pngs(root):
        with Image.open(root / rel) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (64, 64))


def test_build_json_complete(tiny: tuple[Path, dict, list]) -> None:
    root, summary, _ = tiny
    on_disk = json.loads((root / "BUILD.json").read_text())
    assert on_disk == summary
    assert on_disk["builder_version"] == BUILDER_VERSION
    assert (on_disk["seed"], on_disk["size"], on_disk["n_train"], on_disk["n_val"]) == (0, 64, 4, 2)
    assert sorted(on_disk["families"]) == sorted(FAMILIES)
    assert len(on_disk["sources"]) >= 12 and "skimage.data.astronaut" in on_disk["sources"]
    assert not list(root.glob(".BUILD.json.*"))  # no temp file left behind


def test_progress_reports_every_image(tiny: tuple[Path, dict, list]) -> None:
    _, _, calls = tiny
    total = len(FAMILIES) * 12
    assert [d for d, _ in calls] == list(range(1, total + 1))
    assert {t for _, t in calls} == {total}


def test_deterministic_and_seed_dependent(tiny: tuple[Path, dict, list], tmp_path: Path) -> None:
    root, _, _ = tiny
    again = build_demo(tmp_path / "same", seed=0, **TINY)
    other = build_demo(tmp_path / "other", seed=1, **TINY)
    files = _pngs(root)
    assert _pngs(tmp_path / "same") == files
    assert all((root / f).read_bytes() == (tmp_path / "same" / f).read_bytes() for f in files)
    assert again == json.loads((root / "BUILD.json").read_text())
    differing = sum((root / f).read_bytes() != (tmp_path / "other" / f).read_bytes() for f in files)
    assert differing == len(files)
    assert other["seed"] == 1


def test_reals_are_not_shared_across_families(tiny: tuple[Path, dict, list]) -> None:
    root, _, _ = tiny
    reals = [(root / p).read_bytes() for p in _pngs(root) if p.parts[2] == "0_real"]
    assert len(set(reals)) == len(reals)


def test_each_family_process_changes_crops() -> None:
    sources = demo_build._sources()
    rng = np.random.default_rng(0)
    crops = np.stack([
        demo_build._random_crop(a, demo_build._region(a.shape, i, "train"), 64, rng)
        for i, (_, a) in enumerate(sources[:6])
    ])
    outs = {f: demo_build._apply_family(f, crops, 7) for f in FAMILIES}
    for fam, out in outs.items():
        assert out.shape == crops.shape and out.dtype == np.uint8
        diff = np.abs(out.astype(float) - crops)
        assert diff.mean() > 1.5, fam  # the process does something
        assert abs(out.mean() - crops.mean()) < 2.0, fam  # ... but no global brightness shortcut
    fams = list(outs)
    for i, a in enumerate(fams):
        for b in fams[i + 1:]:
            assert np.abs(outs[a].astype(float) - outs[b]).mean() > 1.0, (a, b)


def test_fast_kernels_equal_torch_convolutions() -> None:
    """The family processes' hand-written kernels compute what the float64 convolutions they replace compute."""
    import torch
    import torch.nn.functional as F

    gen = np.random.default_rng(0)
    y = torch.from_numpy(gen.random((2, 3, 9, 7)))
    k = torch.from_numpy(gen.random((4, 4)))
    ref = F.conv_transpose2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), k.expand(3, 1, 4, 4), stride=2, padding=1,
                             groups=3)[..., 2:-2, 2:-2]
    assert torch.allclose(demo_build._transposed_up2(y, k), ref, rtol=0, atol=1e-12)
    r = torch.from_numpy(gen.random((3, 3)))
    ref = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), r.expand(3, 1, 3, 3), groups=3)
    assert torch.allclose(demo_build._correlate3(y, r), ref, rtol=0, atol=1e-12)
    w = torch.from_numpy(gen.random((1, 3, 3, 3)))
    ref = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), w)
    assert torch.allclose(demo_build._conv3_to_one(y, w), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", ["upconv", "denoise", "nearest", "illumination", "banding", "composite"])
def test_processes_computed_planar_give_the_values_of_channels_last_input(family: str) -> None:
    """The processes that make the crops contiguous first (faster kernels) compute what they computed on the
    channels-last view the crops arrive as, to the bit: the demo's bytes and run ids depend on it."""
    import torch

    demo_build._upconv_weights()
    crops = np.random.default_rng(3).integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)
    channels_last = torch.from_numpy(crops).permute(0, 3, 1, 2).double() / 255
    planar = channels_last.contiguous()
    assert not channels_last.is_contiguous()
    out = [demo_build._PROCESSES[family](x, np.random.default_rng(4)) for x in (channels_last, planar)]
    assert torch.equal(*out)
    if family == "denoise":  # filtered one image at a time: the same as the whole batch at once
        y = planar + 0.04 * torch.from_numpy(np.random.default_rng(5).standard_normal((3, 1, 32, 48)))
        assert torch.equal(torch.cat([demo_build._bilateral(i) for i in y.split(1)]), demo_build._bilateral(y))


def test_only_textural_families_change_the_texture() -> None:
    """The fine texture (luma minus its 3x3 mean) of the most textured 16 px patches, the patches Texture-Aware
    Masking hides, survives the non-textural families and not the others."""
    sources = demo_build._sources()
    rng = np.random.default_rng(0)
    crops = np.stack([
        demo_build._random_crop(a, demo_build._region(a.shape, i, "val"), 64, rng)
        for i, (_, a) in enumerate(sources[:6])
    ])

    def fine(a: np.ndarray) -> np.ndarray:
        luma = a.astype(float).mean(-1)
        padded = np.pad(luma, ((0, 0), (1, 1), (1, 1)), mode="edge")
        return luma - sum(padded[:, dy:dy + 64, dx:dx + 64] for dy in range(3) for dx in range(3)) / 9

    texture = fine(crops)
    per_patch = np.abs(texture).reshape(len(crops), 4, 16, 4, 16).mean((2, 4))
    textured = per_patch >= np.median(per_patch, axis=(1, 2), keepdims=True)
    textured = np.repeat(np.repeat(textured, 16, 1), 16, 2)
    assert set(demo_build.KINDS) == set(FAMILIES)
    for fam, kind in demo_build.KINDS.items():
        kept = np.corrcoef(fine(demo_build._apply_family(fam, crops, 7))[textured], texture[textured])[0, 1]
        assert (kept > 0.95) == (kind == "global"), (fam, kept)


def test_nearest_fakes_are_blocky_reals_are_not(tiny: tuple[Path, dict, list]) -> None:
    root, _, _ = tiny

    def blocky(path: Path) -> bool:
        a = np.asarray(Image.open(path)).astype(int)
        return bool((a == np.repeat(np.repeat(a[::4, ::4], 4, 0), 4, 1)).all())

    fakes = sorted((root / "nearest" / "val" / "1_fake").glob("*.png"))
    reals = sorted((root / "nearest" / "val" / "0_real").glob("*.png"))
    assert all(blocky(p) for p in fakes)
    assert not any(blocky(p) for p in reals)


def test_grey_photos_stay_grey() -> None:
    grey = [a for name, a in demo_build._sources() if (a[..., 0] == a[..., 1]).all()]
    assert grey
    crops = np.stack([a[:64, :64] for a in grey])
    for fam in FAMILIES:
        out = demo_build._apply_family(fam, crops, 3)
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all(), fam


def test_train_and_val_regions_are_disjoint() -> None:
    for i, (name, a) in enumerate(demo_build._sources()):
        mask = np.zeros(a.shape[:2], int)
        for split in ("train", "val"):
            top, left, h, w = demo_build._region(a.shape, i, split)
            assert min(h, w) >= 128, name  # room for full-resolution crops at the default size
            mask[top:top + h, left:left + w] += 1
        assert mask.max() == 1, name


def test_interrupted_build_leaves_no_build_json_and_rebuild_cleans(tmp_path: Path) -> None:
    root = tmp_path / "demo"

    def boom(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_demo(root, families=["nearest"], progress=boom, **TINY)
    assert not (root / "BUILD.json").exists()
    stale = root / "nearest" / "train" / "0_real" / "nearest_train_0_real_00099.png"
    stale.write_bytes(b"")
    build_demo(root, families=["nearest"], **TINY)
    assert not stale.exists()
    assert (root / "BUILD.json").exists() and len(_pngs(root)) == 12


@pytest.mark.parametrize(
    "kwargs", [{"families": ["stylegan"]}, {"families": []}, {"size": 60}, {"n_val": 0}]
)
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        build_demo(tmp_path, **{**TINY, **kwargs})


BUILD_AND_HASH = """
import hashlib, sys
from pathlib import Path
from detbench.datasets.demo_build import build_demo
root = Path(sys.argv[1])
build_demo(root, n_train=12, n_val=6, size=64)
digest = hashlib.sha256()
for path in sorted(root.rglob("*.png")):
    digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
print(digest.hexdigest())
"""


def test_same_bytes_whatever_the_cpu_kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the committed demo run ids did not reproduce on another machine (same numbers, other ids). The
    fakes were computed in float32 and with torch's vectorised normal sampler, whose results depend on the CPU's
    instruction set (AVX-512 here, AVX2 or plain elsewhere); some pixels rounded the other way, so the PNG bytes,
    the index hash and every run id changed. The CPU-specific kernels are emulated by restricting torch and
    oneDNN to generic code, in an interpreter of its own (torch reads those variables when it is imported); the
    native build runs here, with the kernels this process already uses."""
    import contextlib
    import io
    import os
    import subprocess
    import sys

    native = io.StringIO()
    monkeypatch.setattr(sys, "argv", ["-c", str(tmp_path / "native")])
    with contextlib.redirect_stdout(native):
        exec(BUILD_AND_HASH, {"__name__": "__main__"})
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
           "DETBENCH_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", BUILD_AND_HASH, str(tmp_path / "generic")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(native.getvalue().strip()) == 64 and native.getvalue().strip() == done.stdout.strip()
