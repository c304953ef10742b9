"""Backbones, weights and preprocessing, with tiny open_clip ViTs and the bundled EfficientNet-Lite0 only."""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from released_layouts import yacs_cfgnode

from detbench.data.preprocess import Preprocess
from detbench.models.backbones import (
    BUNDLED_SHA256,
    CLIP_MEAN,
    BackboneError,
    clip_tokenize,
    load_backbone,
    load_timm_classifier,
    parse_spec,
    register_tiny_models,
    source_kind,
)
from detbench.models.weights import (
    WeightsError,
    is_offline,
    load_state_dict_safely,
    resolve_weights,
    set_offline,
    sha256_file,
    verify_sha256,
)

TINY = "detbench-tiny-vit"


def _clip(arch: str = TINY, seed: int = 123) -> torch.nn.Module:
    import open_clip

    register_tiny_models()
    torch.manual_seed(seed)
    return open_clip.create_model(arch).eval()


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A whole tiny CLIP (visual + text) saved as .safetensors and .pt, plus a second, different one."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("tiny_ckpt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DETBENCH_HOME", str(root / "home"))
        clip, other = _clip(seed=123), _clip(seed=7)
    files = {"st": root / "tiny.safetensors", "pt": root / "tiny.pt", "other": root / "other.safetensors"}
    save_file(clip.state_dict(), files["st"])
    torch.save(clip.state_dict(), files["pt"])
    save_file(other.state_dict(), files["other"])
    torch.save(clip.visual.state_dict(), root / "visual_only.pt")
    files["visual"] = root / "visual_only.pt"
    torch.manual_seed(0)
    files["x"] = root / "x.pt"
    torch.save(torch.randn(2, 3, 224, 224), files["x"])
    with torch.inference_mode():
        files["expected"] = root / "expected.pt"
        torch.save(clip.visual(torch.load(files["x"])), files["expected"])
    return files


def _matches_expected(bb, files: dict[str, Path]) -> bool:
    return torch.allclose(bb.embed(torch.load(files["x"])), torch.load(files["expected"]), atol=1e-6)


@pytest.fixture
def offline():
    set_offline(True)
    yield
    set_offline(False)


# ---------------------------------------------------------------------------------------------- specs


@pytest.mark.parametrize(("spec", "expected"), [
    ("open_clip:ViT-L-14@openai", ("open_clip", "ViT-L-14", "openai")),
    ("timm:efficientnet_lite0@bundled", ("timm", "efficientnet_lite0", "bundled")),
    ("open_clip:ViT-B-16@local-dir:/w/dir", ("open_clip", "ViT-B-16", "local-dir:/w/dir")),
    ("open_clip:detbench-tiny-vit@/tmp/a@b.safetensors", ("open_clip", TINY, "/tmp/a@b.safetensors")),
])
def test_parse_spec_good(spec: str, expected: tuple[str, str, str]) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "ViT-L-14@openai", "clip:ViT-L-14@openai", "open_clip:ViT-L-14",
                                  "open_clip:@openai", "open_clip:ViT-L-14@", "open_clip:ViT L@openai"])
def test_parse_spec_bad(spec: str) -> None:
    with pytest.raises(ValueError, match="spec|provider"):
        parse_spec(spec)


def test_source_kind() -> None:
    sources = ("random", "bundled", "local-dir:/d", "./w.pt", "w.safetensors", "openai")
    assert [source_kind(s) for s in sources] == ["random", "bundled", "local-dir", "file", "file", "tag"]


def test_unknown_arch_suggests() -> None:
    with pytest.raises(ValueError, match="did you mean.*resnet50"):
        load_backbone("timm:resnet5O@random")


# ---------------------------------------------------------------------------------------------- open_clip


@pytest.mark.parametrize(("arch", "patch"),
                         [(TINY, 16), ("detbench-tiny-vit14", 14), ("detbench-tiny-vit32", 32)])
def test_tiny_random(arch: str, patch: int) -> None:
    bb = load_backbone(f"open_clip:{arch}@random")
    assert bb.pretrained is False and bb.weights_sha256 is None and bb.source == "random"
    assert bb.identity()["pretrained"] is False
    assert bb.patch_size == patch and bb.patch_grid == (224 // patch, 224 // patch)
    assert bb.embeddings == ("proj", "pre_proj") and bb.default_embedding == "proj"
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        proj, pre = bb.embed(x), bb.embed(x, "pre_proj")
        assert torch.allclose(proj, bb.model(x), atol=1e-6)
        assert torch.allclose(proj, pre @ bb.model.proj, atol=1e-5)
    assert proj.shape == (2, bb.embed_dims["proj"]) and pre.shape == (2, bb.embed_dims["pre_proj"])
    assert len(bb.blocks()) == 4 and bb.blocks()[-1] is bb.model.transformer.resblocks[-1]
    assert bb.head_modules() == [bb.model.ln_post]
    assert any(p is bb.model.proj for p in bb.head_parameters())
    with pytest.raises(ValueError, match="unknown embedding"):
        bb.embed(x, "nope")


def test_random_init_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(5)
    expected_next = torch.rand(1)
    torch.manual_seed(5)
    a = load_backbone(f"open_clip:{TINY}@random")
    assert torch.equal(torch.rand(1), expected_next)
    b = load_backbone(f"open_clip:{TINY}@random")
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True))



def test_clip_tokenize_is_openai_clips_byte_pair_tokenizer() -> None:
    """Start token, the words, the end token (the highest id, found by argmax as CLIP's pooling does), zero-padded."""
    tokens = clip_tokenize(["a photo.", "X X fake."])
    assert tokens.shape == (2, 77) and tokens.argmax(-1).tolist() == [4, 5]
    assert int(tokens[0, 0]) == 49406 and int(tokens[0, 4]) == 49407 and not tokens[0, 5:].any()


@pytest.mark.parametrize("key", ["st", "pt", "visual"])
def test_local_file_matches_source_model(tiny_files: dict[str, Path], key: str) -> None:
    path = tiny_files[key]
    bb = load_backbone(f"open_clip:{TINY}@{path}")
    assert bb.pretrained is True
    assert bb.spec == f"open_clip:{TINY}@{path.resolve()}" and bb.weights_path == str(path.resolve())
    assert bb.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with torch.inference_mode():
        got = bb.embed(torch.load(tiny_files["x"]))
    assert torch.allclose(got, torch.load(tiny_files["expected"]), atol=1e-6)


def test_relative_path_becomes_absolute(tiny_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_files["st"].parent)
    bb = load_backbone(f"open_clip:{TINY}@./tiny.safetensors")
    assert bb.source == str(tiny_files["st"].resolve())


def test_wrong_sha256_shows_both(tiny_files: dict[str, Path]) -> None:
    actual = hashlib.sha256(tiny_files["st"].read_bytes()).hexdigest()
    with pytest.raises(WeightsError) as err:
        load_backbone(f"open_clip:{TINY}@{tiny_files['st']}", sha256="ab" * 32)
    assert "ab" * 32 in str(err.value) and actual in str(err.value)
    assert verify_sha256(tiny_files["st"], actual[:8]) == actual  # torch-hub style prefix


def test_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsError, match="nope.safetensors") as err:
        load_backbone(f"open_clip:{TINY}@{missing}")
    assert "--set backbone=" in str(err.value)


def test_pretrained_tag_offline_fails_fast(offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("offline mode touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert is_offline()
    with pytest.raises(WeightsError) as err:
        load_backbone("open_clip:ViT-B-32@openai")
    msg = str(err.value)
    assert "'openai'" in msg and "offline" in msg and "local-dir:" in msg and "@/path/to/" in msg
    assert "#tag=openai" in msg  # a bare file must say its tag (OpenAI weights need QuickGELU)


def test_unreachable_hub_fails_fast_without_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    for key in ("DETBENCH_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    assert not is_offline()
    with pytest.raises(WeightsError, match="cannot be reached"):  # probed first: no download retries
        load_backbone("open_clip:ViT-B-32@openai")


def test_set_offline_patches_imported_hub_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from detbench.models import weights

    monkeypatch.setattr(weights, "_saved_offline", None)  # an earlier `--offline` in this process saved its own
    monkeypatch.delenv("DETBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)  # an earlier in-process `--offline` sets all three
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    set_offline(True)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE is True and is_offline()
    set_offline(False)
    assert os.environ["HF_HUB_OFFLINE"] == "0" and "DETBENCH_OFFLINE" not in os.environ
    assert constants.HF_HUB_OFFLINE is False and not is_offline()


def test_tag_from_detbench_home(tiny_files: dict[str, Path], detbench_home: Path) -> None:
    folder = detbench_home / "weights" / "open_clip" / TINY / "mytag"
    folder.mkdir(parents=True)
    (folder / "open_clip_model.safetensors").write_bytes(tiny_files["st"].read_bytes())
    bb = load_backbone(f"open_clip:{TINY}@mytag")
    assert bb.pretrained and bb.spec == f"open_clip:{TINY}@mytag"
    assert bb.weights_path == str(folder / "open_clip_model.safetensors")
    with torch.inference_mode():
        assert _matches_expected(bb, tiny_files)


def test_local_dir(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    import open_clip

    (tmp_path / "open_clip_model.safetensors").write_bytes(tiny_files["st"].read_bytes())
    cfg = {"model_cfg": open_clip.get_model_config(TINY),
           "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(cfg))
    bb = load_backbone(f"open_clip:{TINY}@local-dir:{tmp_path}")
    assert bb.pretrained and bb.preprocess.mean == (0.5, 0.5, 0.5) and bb.source == f"local-dir:{tmp_path}"
    with torch.inference_mode():
        assert _matches_expected(bb, tiny_files)
    with pytest.raises(WeightsError, match="open_clip_config.json"):
        load_backbone(f"open_clip:{TINY}@local-dir:{tmp_path / 'missing'}")


def test_mismatched_checkpoint_lists_keys(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"shape mismatches: .*visual\.conv1\.weight"):
        load_backbone(f"open_clip:detbench-tiny-vit14@{tiny_files['st']}")
    sd = load_state_dict_safely(tiny_files["pt"])
    del sd["visual.ln_post.weight"]
    sd["visual.extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "broken.pt")
    with pytest.raises(WeightsError) as err:
        load_backbone(f"open_clip:{TINY}@{tmp_path / 'broken.pt'}")
    msg = str(err.value)
    assert "missing keys: visual.ln_post.weight" in msg and "unexpected keys: visual.extra.weight" in msg


def test_code_carrying_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return builtins.open, (str(marker), "w")

    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "payload": Payload()}, path)
    with pytest.raises(WeightsError, match="not a safe checkpoint"):
        load_state_dict_safely(path)
    with pytest.raises(WeightsError, match="not a safe checkpoint"):
        load_backbone(f"open_clip:{TINY}@{path}")
    assert not marker.exists()


def test_a_yacs_config_beside_the_weights_is_read_without_yacs_and_runs_none_of_its_code(tmp_path: Path) -> None:
    """A yacs ``CfgNode`` (SPAI's training checkpoints pickle the run's config beside the weights) loads weights-only
    as an inert mapping: the weights come back, and no code of the class runs (it is not even importable then)."""
    marker, t = tmp_path / "ran", torch.arange(3.0)
    with yacs_cfgnode(marker) as node:
        config = node({"MODEL": node({"TYPE": "vit"}), "TAGS": ("a", 1), "LIST": [1.5, None]})
        config.freeze()
        torch.save({"model": {"w": t}, "epoch": 34, "config": config}, tmp_path / "ckpt.pth")
    assert torch.equal(load_state_dict_safely(tmp_path / "ckpt.pth")["w"], t)
    assert not marker.exists()


class CfgNode(dict):
    """yacs' class name in another module: only ``yacs.config.CfgNode`` is read as an inert mapping."""


def test_a_class_named_like_the_yacs_config_elsewhere_is_refused(tmp_path: Path) -> None:
    torch.save({"model": {"w": torch.zeros(2)}, "config": CfgNode(a=1)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match=r"not a safe checkpoint.*CfgNode"):
        load_state_dict_safely(tmp_path / "other.pth")


def test_state_dict_wrappers_and_module_prefix(tmp_path: Path) -> None:
    t = torch.arange(3.0)
    torch.save({"state_dict": {"module.a.weight": t}, "epoch": 3}, tmp_path / "a.pt")
    torch.save({"model": {"b": t}}, tmp_path / "b.pth")
    assert list(load_state_dict_safely(tmp_path / "a.pt")) == ["a.weight"]
    assert torch.equal(load_state_dict_safely(tmp_path / "b.pth")["b"], t)


def test_an_edit_keeping_size_and_mtime_is_hashed_anew(tmp_path: Path, detbench_home: Path) -> None:
    """A pin always hashes the file, and no digest comes from an earlier process (a cache keyed by path, size and
    mtime let an edit that keeps both pass the old file's pin and record the old hash)."""
    import detbench.models.weights

    path = tmp_path / "w.bin"
    path.write_bytes(b"abc")
    old = hashlib.sha256(b"abc").hexdigest()
    assert sha256_file(path) == old
    stamp = path.stat().st_mtime_ns
    path.write_bytes(b"xyz")  # same size; the mtime set back as a copy tool (or an attacker) can
    os.utime(path, ns=(stamp, stamp))
    new = hashlib.sha256(b"xyz").hexdigest()
    assert verify_sha256(path, new) == new  # the new bytes' pin passes ...
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        verify_sha256(path, old)  # ... and the old one fails
    # a digest left on disk by an earlier version (or an earlier process) is never read
    (detbench_home / "weights").mkdir(parents=True, exist_ok=True)
    st = path.stat()
    (detbench_home / "weights" / "sha256-cache.json").write_text(
        json.dumps({f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}": old}))
    detbench.models.weights._digests.clear()  # a new process
    assert sha256_file(path) == new


def test_hf_cache_resolution_checks_blob_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--org--tiny"
    data = b"weights"
    good, commit = hashlib.sha256(data).hexdigest(), "c" * 40
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "blobs" / good).write_bytes(data)
    (repo / "snapshots" / commit / "model.safetensors").symlink_to(repo / "blobs" / good)
    got = resolve_weights("tiny", fix="fix", home_dir="x", hf_repo="org/tiny",
                          hf_filenames=["model.safetensors"])
    assert got.origin == "hf-cache" and got.sha256 == good
    (repo / "blobs" / good).write_bytes(b"corrupted")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        resolve_weights("tiny", fix="fix", hf_repo="org/tiny", hf_filenames=["model.safetensors"])


def test_identity_changes_with_preprocess_and_weights(tiny_files: dict[str, Path]) -> None:
    a = load_backbone(f"open_clip:{TINY}@{tiny_files['st']}")
    b = load_backbone(f"open_clip:{TINY}@{tiny_files['other']}")
    ident = a.identity()
    json.dumps(ident)
    assert ident["weights_sha256"] != b.identity()["weights_sha256"] and ident != b.identity()
    a.preprocess = dataclasses.replace(a.preprocess, resize="shorter")
    assert a.identity()["preprocess"]["resize"] == "shorter" and a.identity() != ident
    assert load_backbone(f"open_clip:{TINY}@random").identity() != ident


def test_crop_override() -> None:
    with pytest.raises(ValueError, match="fixed input size"):
        load_backbone(f"open_clip:{TINY}@random", crop=256)
    assert load_backbone("timm:efficientnet_lite0@random", crop=256).preprocess.crop == 256


# ---------------------------------------------------------------------------------------------- timm


def test_bundled_efficientnet_lite0_classifies_a_cat() -> None:
    from skimage import data

    bb = load_backbone("timm:efficientnet_lite0@bundled")
    assert bb.pretrained and bb.weights_sha256 == BUNDLED_SHA256 and bb.identity()["pretrained"] is True
    assert bb.embeddings == ("pooled",) and bb.embed_dim == 1280 and bb.patch_size is None
    assert len(bb.blocks()) == 7 and bb.head_modules() == [bb.model.conv_head, bb.model.bn2]
    pp = dataclasses.replace(bb.preprocess, resize="shorter")
    x = pp.eval_transform()(Image.fromarray(data.chelsea()))[None]
    clf = load_timm_classifier("timm:efficientnet_lite0@bundled")
    with torch.inference_mode():
        top5 = clf(x).topk(5).indices[0].tolist()
        pooled = bb.embed(x)
        assert torch.allclose(pooled, clf.forward_head(clf.forward_features(x), pre_logits=True), atol=1e-5)
    assert set(top5) & set(range(281, 286)), top5
    assert pooled.shape == (1, 1280)


def test_timm_random_and_tag_offline(offline: None) -> None:
    bb = load_backbone("timm:efficientnet_lite0@random")
    assert not bb.pretrained and bb.preprocess.mean == (0.485, 0.456, 0.406)
    with pytest.raises(WeightsError, match="offline"):
        load_backbone("timm:resnet50@a1_in1k")
    with pytest.raises(ValueError, match="bundled"):
        load_backbone("timm:resnet18@bundled")


# ---------------------------------------------------------------------------------------------- preprocess

PP = Preprocess(crop=224, mean=(0.5, 0.25, 0.75), std=(0.5, 0.5, 0.25))


def _normalise(arr: np.ndarray, pp: Preprocess = PP) -> torch.Tensor:
    x = torch.from_numpy(arr.astype(np.float32).transpose(2, 0, 1)) / 255
    return (x - torch.tensor(pp.mean).view(3, 1, 1)) / torch.tensor(pp.std).view(3, 1, 1)


def test_eval_pads_small_images_with_zero() -> None:
    arr = np.zeros((60, 100, 3), np.uint8)
    arr[..., 0] = 255
    out = PP.eval_transform()(Image.fromarray(arr))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    top, left = (224 - 60) // 2, (224 - 100) // 2
    assert torch.allclose(out[:, top:top + 60, left:left + 100], _normalise(arr))
    mask = torch.ones(224, 224, dtype=torch.bool)
    mask[top:top + 60, left:left + 100] = False
    assert torch.count_nonzero(out[:, mask]) == 0
    assert PP.was_padded(100, 60) and not PP.was_padded(300, 224)
    assert not dataclasses.replace(PP, resize="shorter").was_padded(100, 60)


def test_eval_centre_crop() -> None:
    arr = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    out = PP.eval_transform()(Image.fromarray(arr))
    assert torch.allclose(out, _normalise(arr[38:262, 88:312]))


def test_resize_policies() -> None:
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 450, 3), dtype=np.uint8))
    shorter = dataclasses.replace(PP, resize="shorter")
    assert shorter.resized_size(450, 300) == (336, 224)
    assert shorter.eval_transform()(img).shape == (3, 224, 224)
    stretch = dataclasses.replace(PP, resize="stretch")
    expected = _normalise(np.asarray(img.resize((224, 224), Image.Resampling.BICUBIC)))
    assert torch.allclose(stretch.eval_transform()(img), expected)


def test_train_transform_reproducible() -> None:
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    t = PP.train_transform()
    torch.manual_seed(0)
    a = [t(img) for _ in range(4)]
    torch.manual_seed(0)
    b = [t(img) for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(a[0], x) for x in a[1:])
    square = Image.fromarray(np.asarray(img)[:224, :224])
    full = PP.eval_transform()(square)
    outs = [t(square) for _ in range(12)]
    assert all(torch.equal(o, full) or torch.equal(o, full.flip(-1)) for o in outs)
    assert any(torch.equal(o, full.flip(-1)) for o in outs)
    assert all(torch.equal(PP.train_transform(flip=False)(square), full) for _ in range(4))


def test_eval_and_train_values_are_torchvisions_to_tensor_and_normalize_to_the_bit() -> None:
    from torchvision.transforms import functional as tvf

    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (240, 260, 3), dtype=np.uint8))
    pp = Preprocess(crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

    def reference(window: Image.Image) -> torch.Tensor:
        return tvf.normalize(tvf.to_tensor(window), list(pp.mean), list(pp.std))

    assert torch.equal(pp.eval_transform()(img), reference(tvf.center_crop(img, [224, 224])))
    square = tvf.center_crop(img, [224, 224])
    torch.manual_seed(5)
    views = [pp.train_transform()(square) for _ in range(8)]
    assert all(torch.equal(x, reference(square)) or torch.equal(x, reference(tvf.hflip(square))) for x in views)
    assert any(torch.equal(x, reference(tvf.hflip(square))) for x in views)
    small = Image.fromarray(rng.integers(0, 256, (100, 130, 3), dtype=np.uint8))
    inside = reference(small)
    for pad, fill in (("mean", torch.zeros(3)), ("black", reference(Image.new("RGB", (1, 1)))[:, 0, 0])):
        out = dataclasses.replace(pp, pad=pad).eval_transform()(small)
        top, left = (224 - 100) // 2, (224 - 130) // 2
        assert torch.equal(out[:, top:top + 100, left:left + 130], inside)
        assert torch.equal(out[:, 0, 0], fill) and out.is_contiguous() and out.dtype == torch.float32


def test_preprocess_dict_and_validation() -> None:
    assert Preprocess.from_dict(json.loads(json.dumps(PP.to_dict()))) == PP
    with pytest.raises(ValueError, match="resize"):
        Preprocess(crop=224, mean=(0.5,) * 3, std=(0.5,) * 3, resize="squash")


def test_black_padding_matches_torchvision_centre_crop_fill() -> None:
    from PIL import Image

    from detbench.data.preprocess import Preprocess

    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    img = Image.new("RGB", (10, 10), (255, 255, 255))
    black = Preprocess(crop=16, mean=mean, std=std, pad="black").eval_transform()(img)
    grey = Preprocess(crop=16, mean=mean, std=std).eval_transform()(img)
    expected_corner = torch.tensor([(0 - m) / s for m, s in zip(mean, std, strict=True)])
    torch.testing.assert_close(black[:, 0, 0], expected_corner)
    assert torch.count_nonzero(grey[:, 0, 0]) == 0
    torch.testing.assert_close(black[:, 8, 8], grey[:, 8, 8])
    assert Preprocess(crop=16, mean=mean, std=std, pad="black").to_dict()["pad"] == "black"


def test_spec_can_pin_the_weights_sha256(tmp_path: Path) -> None:
    import open_clip
    from safetensors.torch import save_file

    from detbench.models.backbones import register_tiny_models
    from detbench.models.weights import WeightsError

    register_tiny_models()
    clip = open_clip.create_model("detbench-tiny-vit")
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    ok = load_backbone(f"open_clip:detbench-tiny-vit@{path}#sha256={digest.upper()}")
    assert ok.weights_sha256 == digest
    with pytest.raises(WeightsError) as err:
        load_backbone(f"open_clip:detbench-tiny-vit@{path}#sha256={'0' * 64}")
    assert digest in str(err.value) and "0" * 64 in str(err.value)
    with pytest.raises(ValueError, match="64 hex digits"):
        load_backbone(f"open_clip:detbench-tiny-vit@{path}#sha256=abc")


@pytest.fixture(scope="module")
def vit_b32_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random ViT-B-32 visual-tower weights (QuickGELU-built, as OpenAI's) in a Hugging Face cache layout."""
    import open_clip
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("vit_b32")
    torch.manual_seed(5)
    visual = open_clip.create_model("ViT-B-32", force_quick_gelu=True).visual
    blob = root / "hub" / "models--timm--vit_base_patch32_clip_224.openai" / "blobs" / "0123abcd"
    blob.parent.mkdir(parents=True)
    save_file(visual.state_dict(), blob)
    snapshot = blob.parent.parent / "snapshots" / "rev" / "open_clip_model.safetensors"
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(blob)
    return snapshot


def test_openai_weights_from_a_file_build_the_openai_model(
    vit_b32_file: Path, detbench_home: Path, tmp_path: Path
) -> None:
    """The same weights through the tag path (home folder) and through every file form give identical
    embeddings; a file whose tag is ambiguous is refused, never built with the other activation."""
    home = detbench_home / "weights" / "open_clip" / "ViT-B-32" / "openai"
    home.mkdir(parents=True)
    os.link(vit_b32_file.resolve(), home / "open_clip_model.safetensors")
    plain = tmp_path / "open_clip_model.safetensors"
    os.link(vit_b32_file.resolve(), plain)
    torch.manual_seed(1)
    x = torch.randn(1, 3, 224, 224)
    built: dict[str, object] = {}

    def embed(spec: str) -> torch.Tensor:
        bb = built[spec] = load_backbone(spec)  # each spec built once; its facts are read below
        assert bb.preprocess.mean == CLIP_MEAN and bb.preprocess.interpolation == "bicubic"
        with torch.inference_mode():
            return bb.embed(x, "proj")

    tag = embed("open_clip:ViT-B-32@openai")
    for spec in (f"open_clip:ViT-B-32@{vit_b32_file}",  # Hugging Face cache: the repo names the tag
                 f"open_clip:ViT-B-32@{plain}#tag=openai", f"open_clip:ViT-B-32-quickgelu@{plain}"):
        assert torch.equal(embed(spec), tag), spec
    gelu = embed(f"open_clip:ViT-B-32@{plain}#tag=laion2b_s34b_b79k")
    assert not torch.allclose(gelu, tag, rtol=1e-3)
    with pytest.raises(BackboneError, match=r"#tag=TAG \(e.g. #tag=openai"):
        load_backbone(f"open_clip:ViT-B-32@{plain}")
    with pytest.raises(BackboneError, match="not an open_clip tag"):
        load_backbone(f"open_clip:ViT-B-32@{plain}#tag=opnai")
    openai = built[f"open_clip:ViT-B-32@{plain}#tag=openai"]
    assert openai.identity() != built[f"open_clip:ViT-B-32@{plain}#tag=laion2b_s34b_b79k"].identity()
    assert openai.pretrained_tag == "openai" and openai.source == str(plain)  # the tag a file resolved to
    assert built["open_clip:ViT-B-32@openai"].pretrained_tag == "openai"


def test_integer_bool_and_complex_tensors_are_refused_where_the_model_holds_floats(tmp_path: Path) -> None:
    from detbench.models.weights import check_state_dict, load_into

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    good = model.state_dict()
    for dtype in (torch.int8, torch.int64, torch.bool, torch.complex64):
        bad = {**good, "0.weight": good["0.weight"].to(dtype)}
        with pytest.raises(WeightsError, match="not floating point where the model holds floating point") as err:
            load_into(model, bad, "the checkpoint x.pth")
        assert f"0.weight: checkpoint {str(dtype).removeprefix('torch.')} vs model float32" in str(err.value)
        assert "0.bias" not in str(err.value)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):  # another float width loads as the model's
        load_into(model, {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in good.items()}, "x")
    check_state_dict(good, {**good, "1.num_batches_tracked": torch.tensor(3)}, "x")  # an integer buffer stays


def test_an_int8_backbone_checkpoint_is_refused_naming_its_keys(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tiny_files["st"]))
    sd["visual.proj"] = sd["visual.proj"].to(torch.int8)
    sd["visual.conv1.weight"] = sd["visual.conv1.weight"] > 0
    save_file(sd, str(tmp_path / "int8.safetensors"))
    with pytest.raises(WeightsError) as err:
        load_backbone(f"open_clip:{TINY}@{tmp_path / 'int8.safetensors'}")
    assert "visual.proj: checkpoint int8" in str(err.value) and "visual.conv1.weight: checkpoint bool" in str(err.value)


def test_other_checkpoint_wrappers_are_named_with_the_accepted_ones(tmp_path: Path) -> None:
    weights = {"a.weight": torch.ones(2)}
    torch.save({"model_state_dict": weights, "epoch": 3, "optimizer_state_dict": {}}, tmp_path / "a.pth")
    torch.save({"net": weights, "ema": weights}, tmp_path / "b.pth")
    with pytest.raises(WeightsError) as err:
        load_state_dict_safely(tmp_path / "a.pth")
    msg = " ".join(str(err.value).split())
    assert "model_state_dict (a dict of 1 entries, 1 of them tensors)" in msg and "epoch (int)" in msg
    assert "{'state_dict': state_dict} or {'model': state_dict}" in msg
    assert "torch.save(checkpoint['model_state_dict'], 'weights.pth')" in msg
    with pytest.raises(WeightsError, match=r"its top level holds net \(.*\), ema \(") as err:
        load_state_dict_safely(tmp_path / "b.pth")
    assert "torch.save(checkpoint[" not in str(err.value)  # two candidates: nothing is guessed


def test_the_pickle_refusal_never_quotes_torchs_unsafe_advice(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return builtins.print, ("never",)

    torch.save({"w": torch.zeros(2), "payload": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="not a safe checkpoint") as err:
        load_state_dict_safely(tmp_path / "evil.pt")
    msg = str(err.value)
    assert "would call or build print" in msg  # what was refused, and none of torch's ways around the refusal:
    for advice in ("weights_only", "arbitrary code execution", "add_safe_globals", "safe_globals", "if you trust"):
        assert advice not in msg, advice


def test_weights_paths_may_contain_a_hash_sign(tmp_path: Path) -> None:
    """Only a trailing #sha256=HEX (or #tag=TAG in a backbone spec) is an option; any other # is the path's."""
    from detbench.models.backbones import path_free_spec, split_options
    from detbench.models.weights import load_checkpoint_file

    folder = tmp_path / "run#3"
    folder.mkdir()
    path = folder / "w#1.pth"
    torch.save({"w": torch.ones(2)}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_checkpoint_file(str(path), what="w", fix="").sha256 == digest
    assert load_checkpoint_file(f"{path}#sha256={digest}", what="w", fix="").path == path
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_checkpoint_file(f"{path}#sha256={'0' * 64}", what="w", fix="")
    with pytest.raises(WeightsError, match="any other # is part of the path"):
        load_checkpoint_file(f"{path}#sha=abc", what="w", fix="")
    assert split_options(f"open_clip:X@{path}#tag=openai#sha256={digest}") == (
        f"open_clip:X@{path}", {"tag": "openai", "sha256": digest})
    with pytest.raises(BackboneError, match="at most once"):
        split_options(f"{path}#sha256={digest}#sha256={digest}")
    assert path_free_spec(f"open_clip:X@{path}#tag=openai#sha256={digest}") == "open_clip:X@file#tag=openai"
    assert path_free_spec(f"open_clip:X@local-dir:{folder}") == "open_clip:X@local-dir"
    for spec in ("open_clip:ViT-L-14@openai", "timm:efficientnet_lite0@bundled", "timm:x@random"):
        assert path_free_spec(spec) == spec  # runs that name no file keep their ids


def test_a_backbone_identity_holds_no_path(tiny_files: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "elsewhere" / "copy.safetensors"
    copy.parent.mkdir()
    shutil.copyfile(tiny_files["st"], copy)
    a, b = load_backbone(f"open_clip:{TINY}@{tiny_files['st']}"), load_backbone(f"open_clip:{TINY}@{copy}")
    assert a.identity() == b.identity() and a.identity()["spec"] == f"open_clip:{TINY}@file"
    assert str(tmp_path) not in json.dumps(b.identity()) and a.spec != b.spec  # the spec shown keeps the path
    assert a.identity() != load_backbone(f"open_clip:{TINY}@{tiny_files['other']}").identity()
