"""TSG (Zeng et al., 2024): reconstruction tests (no code was released).

What the paper fixes and these tests prove: the classifier's input is the noise a frozen diffusion UNet predicts for
the image at the configured time step t (the clean image, no noise added, no inversion), and a ResNet-50 scores it.
The reference below re-derives that forward pass in float64 on a tiny random UNet of the same family (diffusers
``UNet2DModel``, one resolution level) saved as a diffusers folder, and compares detbench's per-image scores with it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke
from equivalence import assert_matches_reference, double_state
from PIL import Image

from detbench.detectors.tsg import TSG, TSGConfig, load_unet, noise_backbone
from detbench.errors import WeightsError
from detbench.models.diffusion import INSTALL_HINT
from detbench.registry import DETECTORS

diffusers = pytest.importorskip("diffusers")

SIZE, T = 24, 37
GENERATORS = ("g", "h")


def tiny_unet() -> torch.nn.Module:
    torch.manual_seed(5)
    unet = diffusers.UNet2DModel(sample_size=SIZE, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(16,), down_block_types=("DownBlock2D",),
                                 up_block_types=("UpBlock2D",), norm_num_groups=8)
    with torch.no_grad():  # diffusers zero-initialises nothing here, but make every tensor clearly non-trivial
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return unet.eval()


@pytest.fixture(scope="module")
def unet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("unet")
    tiny_unet().save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(3)
    for gen in GENERATORS:
        for label in ("0_real", "1_fake"):
            (root / gen / label).mkdir(parents=True)
            for i in range(4):
                w, h = (30, 20) if i % 2 else (20, 28)  # stretched to SIZE x SIZE, aspect ignored
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / gen / label / f"{gen}{label[0]}{i}.png")
    return root


def reference_input(path: Path, dtype: torch.dtype) -> torch.Tensor:
    """The paper's input: the image resized to SIZE x SIZE (bilinear), scaled to [-1, 1]."""
    img = Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float64) / 255.0).permute(2, 0, 1)[None]
    return ((x - 0.5) / 0.5).to(dtype)


def reference_noise(unet: torch.nn.Module, x: torch.Tensor, t: int) -> torch.Tensor:
    """eps(x, t): the UNet on the clean image at time step t, its first three channels."""
    return unet(x, torch.tensor([t])).sample[:, :3]


def test_noise_map_is_the_unets_prediction_for_the_clean_image_at_t(unet_folder: Path, image_root: Path) -> None:
    """detbench's noise map of an image equals the float64 reference at t, and differs from the one at t=0."""
    unet, facts = load_unet(str(unet_folder), SIZE)
    backbone = noise_backbone(unet, facts, TSGConfig(unet=str(unet_folder), timestep=T, size=SIZE))
    paths = sorted(image_root.rglob("*.png"))[:4]
    with torch.no_grad():
        ours = torch.cat([backbone.embed(backbone.preprocess.eval_transform()(Image.open(p))[None]) for p in paths])
        ref = tiny_unet()
        ref32 = torch.cat([reference_noise(ref, reference_input(p, torch.float32), T) for p in paths]).flatten(1)
        ref.load_state_dict(double_state(ref.state_dict()))
        ref.double()
        ref64 = torch.cat([reference_noise(ref, reference_input(p, torch.float64), T) for p in paths]).flatten(1)
        at_zero = torch.cat([reference_noise(ref, reference_input(p, torch.float64), 0) for p in paths]).flatten(1)
    assert ours.shape == (len(paths), 3 * SIZE * SIZE)
    assert_matches_reference(ours.numpy(), ref32.numpy(), ref64.numpy())
    assert (ref64 - at_zero).abs().max() > 1e-2  # the time step reaches the output: a wrong t could not pass


def test_scores_are_the_resnet_on_the_noise_maps(unet_folder: Path, image_root: Path, detbench_home: Path) -> None:
    """End to end: every scored image's P(fake) is sigmoid(ResNet-50(eps(x, t))) with the saved ResNet weights."""
    from detbench.detectors.cnnspot import build_resnet50
    from detbench.models.weights import load_state_dict_safely

    settings = {"unet": unet_folder, "timestep": T, "size": SIZE, "init": "random", "epochs": 1,
                "train_batch_size": 4, "batch_size": 3}
    result = invoke("run", "tsg", "--suite", "folder", "--root", str(image_root), "--protocol", "train-on-g", "-q",
                    *[a for k, v in settings.items() for a in ("--set", f"{k}={v}")])
    assert result.exit_code == 0, result.output
    [run_json] = (detbench_home / "runs" / "folder" / "tsg").glob("*/run.json")
    record = json.loads(run_json.read_text())
    assert record["fit"]["init"] == "random" and record["fit"]["kept_epoch"] == 1
    scores = pd.read_parquet(run_json.parent / "scores.parquet")
    assert len(scores) and (scores["status"] == "ok").all()
    [state] = detbench_home.rglob("tsg.safetensors")
    net = build_resnet50(1)
    net.load_state_dict(load_state_dict_safely(state))
    unet = tiny_unet()
    paths = [image_root / p for p in scores["path"]]
    with torch.no_grad():
        ref32 = torch.sigmoid(torch.cat([net.eval()(reference_noise(unet, reference_input(p, torch.float32), T))
                                         for p in paths]))[:, 0].double().numpy()
        net.load_state_dict(double_state(net.state_dict()))
        net.double()
        unet.load_state_dict(double_state(unet.state_dict()))
        unet.double()
        ref64 = torch.sigmoid(torch.cat([net(reference_noise(unet, reference_input(p, torch.float64), T))
                                         for p in paths]))[:, 0].numpy()
    assert_matches_reference(scores["score"].to_numpy(), ref32, ref64)


def test_noise_maps_are_extracted_once_and_keyed_by_the_time_step(unet_folder: Path, image_root: Path,
                                                                  tmp_path: Path) -> None:
    """The second extraction of the same rows reads the cache; another time step is another cache key."""
    from detbench.models.features import FeatureCache, feature_key

    rows = pd.DataFrame({"path": [str(p.relative_to(image_root)) for p in sorted(image_root.rglob("*.png"))[:3]]})
    rows["image_id"] = [f"id{i}" for i in range(len(rows))]
    cache = FeatureCache(tmp_path / "features")
    unet, facts = load_unet(str(unet_folder), SIZE)
    backbones = {t: noise_backbone(unet, facts, TSGConfig(unet=str(unet_folder), timestep=t, size=SIZE))
                 for t in (0, T)}
    first, _, counts1 = cache.extract(backbones[T], image_root, rows, workers=0)
    second, _, counts2 = cache.extract(backbones[T], image_root, rows, workers=0)
    assert counts1["computed"] == 3 and counts2 == {"cached": 3, "computed": 0, "failed": 0}
    np.testing.assert_array_equal(first, second)
    assert feature_key(backbones[0], "noise", None) != feature_key(backbones[T], "noise", None)


def test_unet_loads_strictly_naming_the_file(unet_folder: Path, tmp_path: Path) -> None:
    """A weights file missing a tensor is refused with the file's name; a missing folder names the fix."""
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((unet_folder / "config.json").read_text())
    tensors = load_file(str(unet_folder / "diffusion_pytorch_model.safetensors"))
    tensors.pop("conv_out.bias")
    save_file(tensors, str(broken / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(WeightsError, match=r"(?s)diffusion_pytorch_model\.safetensors.*conv_out\.bias"):
        load_unet(str(broken), SIZE)
    with pytest.raises(WeightsError, match="--set unet="):
        load_unet(str(tmp_path / "absent"), SIZE)
    with pytest.raises(WeightsError, match="--set unet="):  # a repository id not in the local cache
        load_unet("nobody/no-such-unet", SIZE)


def test_a_cached_pipeline_repository_loads_its_unet(unet_folder: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A repository id is looked up in the local Hugging Face cache (a pipeline's ``unet/`` too); the blob's name is
    its sha256 and is verified."""
    import hashlib

    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--someone--pipe"
    snapshot = repo / "snapshots" / "abc123"
    (snapshot / "unet").mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        data = (unet_folder / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / "unet" / name).symlink_to(blob)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    unet, facts = load_unet("someone/pipe", SIZE)
    assert facts["source"] == "hf:someone/pipe" and facts["pretrained"] is True
    assert facts["weights_sha256"] == hashlib.sha256(
        (unet_folder / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    for a, b in zip(unet.state_dict().values(), tiny_unet().state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_pipeline_folder_loads_its_unet(unet_folder: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(unet_folder, tmp_path / "pipe" / "unet")
    unet, facts = load_unet(str(tmp_path / "pipe"), SIZE)
    assert facts["source"] == "file" and facts["pretrained"] is True
    for a, b in zip(unet.state_dict().values(), tiny_unet().state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_missing_unet_is_one_error_line(image_root: Path, tmp_path: Path) -> None:
    result = invoke("run", "tsg", "--suite", "folder", "--root", str(image_root), "--protocol", "train-on-g", "-q",
                    "--set", f"unet={tmp_path / 'absent'}")
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output


def test_without_diffusers_the_error_names_the_extra(unet_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ImportError
    with pytest.raises(WeightsError, match=r"pip install 'detbench\[diffusion\]'") as info:
        load_unet(str(unet_folder), SIZE)
    assert INSTALL_HINT in str(info.value)


def test_the_random_stand_in_is_recorded_as_one() -> None:
    unet, facts = load_unet("tiny@random", SIZE)
    assert facts["pretrained"] is False and "stand-in" in facts["note"] and facts["source"] == "random"
    again, _ = load_unet("tiny@random", SIZE)
    for a, b in zip(unet.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # seeded: the same stand-in in every run


def test_settings_are_validated_and_registered() -> None:
    from detbench.config import ConfigError

    assert TSGConfig().timestep == 0 and TSGConfig().size == 256
    for bad in ({"timestep": -1}, {"size": 4}, {"epochs": 0}, {"unet": ""}):
        with pytest.raises(ConfigError):
            TSGConfig(**bad).validate()
    info = DETECTORS.info("tsg")
    assert info is not None and info.year == 2024 and info.training == "trains" and info.weights_key == ""
    assert "2411.11016" in info.paper and TSG.name == "tsg"
