"""SDAIE: checkpoints in the authors' formats (random weights) score through the CLI as the original would.

The reference (written here from the published code's semantics, not imported): ``bc_eval.py`` loads
``{'state_net': combonet.state_dict()}`` (DistributedDataParallel's ``module.`` prefixes), scores
``1 - softmax(fc(base(x)))[:, 0]``; ``DatasetforDiffusionGranularityBinary._adaptivepatch``: a side under 64 ->
``Resize((64, 64))``; else torchvision ``CenterCrop((w', h'))`` with ``(w', h')`` the PIL ``(width, height)``
rounded down to multiples of 64 (torchvision reads ``(height, width)``: zero padding where that exceeds the image);
``ToTensor`` + CLIP normalisation; ``unfold`` into 64 px patches, row by row. ``base``: each channel through the 30
SRM filters (1 -> 30 convolution, padding 2) -> 90 maps; 3x3 convolutions each followed by LayerNorm over
``[32, s, s]`` and Hardtanh(-5, 5) (the first) or ReLU; ``AvgPool2d(3, stride 2, padding 1)`` after groups 2-4;
MPN-COV (``X I_hat X^T`` with ``I_hat = I / M - 1 / M^2``; Newton-Schulz square root on ``A / tr A`` with 5
iterations, times ``sqrt(tr A)``; the upper triangle, row by row); a pre-norm transformer (2 layers, 4 heads of 16,
MLP 128, GELU) over the patch tokens; the first token's output. ``oc_funs.py``: the backbone checkpoint's
``module.backbone.*``; a GaussianMixture's ``score_samples``; threshold = the training reals' log-likelihood at
index ``int(0.02 N)`` in ascending order.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import invoke
from equivalence import (
    assert_refused_naming,
    assert_released_run_matches,
    double_state,
    released_run,
    write_test_images,
)
from PIL import Image

from detbench.detectors.aide_net import srm_filters

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073], dtype=torch.float64).view(3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711], dtype=torch.float64).view(3, 1, 1)
IMAGES = [  # (generator, label folder, name, width, height): padded crops both ways, a resize, several patches
    ("g", "0_real", "a.png", 130, 70),
    ("g", "1_fake", "b.png", 70, 140),
    ("g", "0_real", "c.png", 50, 90),
    ("g", "1_fake", "d.png", 128, 128),
    ("g", "0_real", "e.jpg", 100, 64),
]
HEADS = (1, 7, 1, 1, 1, 6, 4, 1, 1, 6, 4, 2, 1, 5)  # backbone_train.py's fc1 .. fc14


# ---------------------------------------------------------------------------------------------- reference


def original_shapes() -> dict[str, tuple[int, ...]]:
    """``base()``'s state dict: names and shapes as Net.py / vit.py define them."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(2):
        t = f"transformer.layers.{layer}"
        shapes.update({f"{t}.0.norm.weight": (528,), f"{t}.0.norm.bias": (528,), f"{t}.0.fn.to_qkv.weight": (192, 528),
                       f"{t}.0.fn.to_out.0.weight": (528, 64), f"{t}.0.fn.to_out.0.bias": (528,),
                       f"{t}.1.norm.weight": (528,), f"{t}.1.norm.bias": (528,), f"{t}.1.fn.net.0.weight": (128, 528),
                       f"{t}.1.fn.net.0.bias": (128,), f"{t}.1.fn.net.3.weight": (528, 128),
                       f"{t}.1.fn.net.3.bias": (528,)})
    shapes["group1.hpf.weight"] = (30, 1, 5, 5)
    for group, convs, size, cin in (("group1_b", 1, 64, 90), ("group2", 4, 64, 32), ("group3", 2, 32, 32),
                                    ("group4", 2, 16, 32), ("group5", 2, 8, 32)):
        for k in range(convs):
            shapes.update({f"{group}.{3 * k}.weight": (32, cin if k == 0 else 32, 3, 3), f"{group}.{3 * k}.bias": (32,),
                           f"{group}.{3 * k + 1}.weight": (32, size, size),
                           f"{group}.{3 * k + 1}.bias": (32, size, size)})
    return shapes


def random_extractor(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights of the extractor: He-scaled convolutions, LayerNorm affines around (1, 0), the SRM bank
    perturbed (so the loaded one must be used)."""
    sd = {}
    for name, shape in original_shapes().items():
        if name == "group1.hpf.weight":
            value = torch.from_numpy(srm_filters()).view(shape) + 0.05 * torch.randn(shape, generator=gen)
        elif len(shape) == 4:
            value = torch.randn(shape, generator=gen) * (2.0 / (shape[1] * 9)) ** 0.5
        elif "norm" in name or (len(shape) == 3) or name.split(".")[-2] in {"1", "4", "7", "10"}:
            value = (1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) == 2:
            value = torch.randn(shape, generator=gen) / shape[1] ** 0.5
        else:
            value = 0.05 * torch.randn(shape, generator=gen)
        sd[name] = value.float()
    return sd


def reference_patches(path: Path, swapped: bool = True) -> torch.Tensor:
    """``_adaptivepatch`` of one image: ``[n, 3, 64, 64]`` float64."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    if min(w, h) < 64:
        px = np.asarray(img.resize((64, 64), Image.Resampling.BILINEAR))
    else:
        th, tw = (w // 64 * 64, h // 64 * 64) if swapped else (h // 64 * 64, w // 64 * 64)
        px = np.asarray(img)
        ph, pw = max(th - h, 0), max(tw - w, 0)
        px = np.pad(px, ((ph // 2, (ph + 1) // 2), (pw // 2, (pw + 1) // 2), (0, 0)))
        top, left = int(round((px.shape[0] - th) / 2.0)), int(round((px.shape[1] - tw) / 2.0))
        px = px[top:top + th, left:left + tw]
    x = (torch.from_numpy(px.astype(np.float64) / 255.0).permute(2, 0, 1) - MEAN) / STD
    rows, cols = x.shape[1] // 64, x.shape[2] // 64
    return torch.stack([x[:, i * 64:(i + 1) * 64, j * 64:(j + 1) * 64] for i in range(rows) for j in range(cols)])


def reference_maps(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str = "") -> tuple[torch.Tensor, list]:
    """``base.forward`` of one image's patches ``[n, 3, 64, 64]``: the feature and f1 .. f5."""
    n = x.shape[0]
    r = F.conv2d(x.reshape(n * 3, 1, 64, 64), sd[p + "group1.hpf.weight"], padding=2).reshape(n, 90, 64, 64)

    def conv_ln(t: torch.Tensor, group: str, i: int, act) -> torch.Tensor:
        t = F.conv2d(t, sd[f"{p}{group}.{i}.weight"], sd[f"{p}{group}.{i}.bias"], padding=1)
        return act(F.layer_norm(t, t.shape[1:], sd[f"{p}{group}.{i + 1}.weight"], sd[f"{p}{group}.{i + 1}.bias"]))

    t = conv_ln(r, "group1_b", 0, lambda v: F.hardtanh(v, -5, 5))
    maps = []
    for group, convs, pool in (("group2", 4, True), ("group3", 2, True), ("group4", 2, True), ("group5", 2, False)):
        for k in range(convs):
            t = conv_ln(t, group, 3 * k, F.relu)
        if pool:
            t = F.avg_pool2d(t, 3, stride=2, padding=1)  # count_include_pad=True
        maps.append(t)
    m = t.shape[2] * t.shape[3]
    X = t.reshape(n, 32, m)
    i_hat = -1.0 / m / m * torch.ones(m, m, dtype=X.dtype) + 1.0 / m * torch.eye(m, dtype=X.dtype)
    cov = X @ i_hat @ X.transpose(1, 2)
    eye3 = 3.0 * torch.eye(32, dtype=X.dtype)
    norm = (cov * eye3).sum(dim=(1, 2)) / 3.0
    a = cov / norm.view(n, 1, 1)
    zy = 0.5 * (eye3 - a)
    ys, zs = [a @ zy], [zy]
    for i in range(1, 4):
        zy = 0.5 * (eye3 - zs[i - 1] @ ys[i - 1])
        ys.append(ys[i - 1] @ zy)
        zs.append(zy @ zs[i - 1])
    root = 0.5 * ys[3] @ (eye3 - zs[3] @ ys[3]) * norm.sqrt().view(n, 1, 1)
    index = torch.ones(32, 32).triu().reshape(-1).nonzero()[:, 0]
    tokens = root.reshape(n, -1)[:, index]
    maps.append(tokens[None])
    z = tokens[None]
    for layer in range(2):
        t_ = f"{p}transformer.layers.{layer}"
        a_ = F.layer_norm(z, (528,), sd[f"{t_}.0.norm.weight"], sd[f"{t_}.0.norm.bias"])
        qkv = (a_ @ sd[f"{t_}.0.fn.to_qkv.weight"].T).chunk(3, -1)
        q, k, v = (c.reshape(1, n, 4, 16).permute(0, 2, 1, 3) for c in qkv)
        att = torch.softmax(torch.einsum("bhid,bhjd->bhij", q, k) * 16**-0.5, dim=-1)
        o = torch.einsum("bhij,bhjd->bhid", att, v).permute(0, 2, 1, 3).reshape(1, n, 64)
        z = z + o @ sd[f"{t_}.0.fn.to_out.0.weight"].T + sd[f"{t_}.0.fn.to_out.0.bias"]
        a_ = F.layer_norm(z, (528,), sd[f"{t_}.1.norm.weight"], sd[f"{t_}.1.norm.bias"])
        hidden = F.gelu(a_ @ sd[f"{t_}.1.fn.net.0.weight"].T + sd[f"{t_}.1.fn.net.0.bias"])
        z = z + hidden @ sd[f"{t_}.1.fn.net.3.weight"].T + sd[f"{t_}.1.fn.net.3.bias"]
    return z[0, 0], maps


def reference_features(paths: list[Path], sd: dict[str, torch.Tensor], dtype: torch.dtype, p: str = "") -> torch.Tensor:
    sd = double_state(sd) if dtype == torch.float64 else sd
    with torch.no_grad():
        return torch.stack([reference_maps(reference_patches(q).to(dtype), sd, p)[0] for q in paths])


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_images(tmp_path_factory.mktemp("sdaie"), IMAGES, seed=11, noise=(12.0, 6.0), quality=90)


def _paths() -> list[str]:
    return [f"{g}/{label}/{name}" for g, label, name, _w, _h in IMAGES]


# ---------------------------------------------------------------------------------------------- binary


def test_released_classifier_scores_as_bc_eval(image_root: Path, tmp_path: Path, detbench_home: Path) -> None:
    gen = torch.Generator().manual_seed(4)
    pretrained, own = random_extractor(gen), random_extractor(gen)
    paths = _paths()
    feats = reference_features([image_root / q for q in paths], own, torch.float64)
    u = torch.randn(528, generator=gen, dtype=torch.float64)  # fc spreads these images' logits (not saturated)
    proj = (feats - feats.mean(0)) @ u
    u = u * 1.5 / proj.std()
    fc_w = torch.zeros(2, 528, dtype=torch.float64)
    fc_w[1] = u
    fc_b = torch.tensor([0.0, float(-(feats.mean(0) @ u))], dtype=torch.float64)
    state = {**{f"module.diffusionextractor_pretrained.{k}": v for k, v in pretrained.items()},
             **{f"module.diffusionextractor_random.{k}": v for k, v in own.items()},
             "module.fc.weight": fc_w.float(), "module.fc.bias": fc_b.float()}
    torch.save({"state_net": state, "state_optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]},
                "epoch": 15}, tmp_path / "pretrained.pth")

    def scores(dtype: torch.dtype) -> dict[str, float]:
        sd = {k: v.to(dtype) for k, v in own.items()}
        f = reference_features([image_root / q for q in paths], sd, dtype)
        logits = f @ fc_w.to(dtype).T + fc_b.to(dtype)
        return dict(zip(paths, (1 - torch.softmax(logits, dim=1)[:, 0]).double().tolist(), strict=True))

    ref32, ref64 = scores(torch.float32), scores(torch.float64)
    result = invoke("run", "sdaie", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    "--set", f"weights={tmp_path / 'pretrained.pth'}")
    assert result.exit_code == 0, result.output
    record = assert_released_run_matches(detbench_home, "sdaie", ref32, ref64, images=len(IMAGES))
    identity = record["key"]["detector_identity"]
    assert identity["weights_sha256"] == hashlib.sha256((tmp_path / "pretrained.pth").read_bytes()).hexdigest()
    assert identity["eval_preprocessing"]["crop_axes"] == "swapped"


@pytest.mark.parametrize("swapped", [True, False])
def test_evaluation_patches_follow_adaptivepatch(image_root: Path, swapped: bool) -> None:
    from detbench.detectors.sdaie_net import AdaptivePatches

    transform = AdaptivePatches(40000, swapped_crop=swapped)
    for q in _paths():
        got = transform(Image.open(image_root / q).convert("RGB")).double()
        want = reference_patches(image_root / q, swapped)
        assert got.shape == want.shape, q
        assert torch.allclose(got, want, atol=1e-6), q
    assert AdaptivePatches(1)(Image.open(image_root / _paths()[3]).convert("RGB")).shape == (1, 3, 64, 64)


def test_another_checkpoint_is_refused_naming_its_keys(image_root: Path, tmp_path: Path) -> None:
    """The pretext backbone checkpoint given as the classifier's weights: one line naming the keys."""
    gen = torch.Generator().manual_seed(1)
    backbone = {f"module.backbone.{k}": v for k, v in random_extractor(gen).items()}
    torch.save({"state_net": backbone}, tmp_path / "backbone.pth")
    result = invoke("run", "sdaie", "--suite", "folder", "--root", str(image_root), "--protocol", "eval", "-q",
                    "--set", f"weights={tmp_path / 'backbone.pth'}")
    assert_refused_naming(result, "diffusionextractor_pretrained.", "backbone.")


def test_the_regulariser_is_the_summed_feature_distance() -> None:
    """bc_train.py: MSE(f1..f5 of the trained extractor, f1..f5 of the frozen one), summed; only in training."""
    from detbench.detectors.sdaie_net import BinaryNet

    gen = torch.Generator().manual_seed(2)
    a, b = random_extractor(gen), random_extractor(gen)
    net = BinaryNet()
    net.diffusionextractor_pretrained.load_state_dict(a)
    net.diffusionextractor_random.load_state_dict(b)
    x = torch.randn(1, 2, 3, 64, 64, generator=gen)
    net.train()
    net(x.float())
    got = float(net.take_distance().detach())
    _, maps_a = reference_maps(x[0].double(), double_state(a))
    _, maps_b = reference_maps(x[0].double(), double_state(b))
    want = sum(float(((p - q) ** 2).mean()) for p, q in zip(maps_a, maps_b, strict=True))
    assert got == pytest.approx(want, rel=1e-4)
    net.eval()
    net(x.float())
    assert net.take_distance() is None
    assert not any(p.requires_grad for p in net.diffusionextractor_pretrained.parameters())


def _train_tree(root: Path) -> Path:
    images = [(f"{split}/seen", label, f"{i}.png", 64 + 8 * i, 64) for split, n in (("train", 4), ("test", 2))
              for label in ("0_real", "1_fake") for i in range(n)]
    return write_test_images(root, images, seed=5, noise=(10.0, 3.0))


def test_training_regularises_with_the_pretext_extractor(tmp_path: Path, detbench_home: Path) -> None:
    root = _train_tree(tmp_path / "tree")
    gen = torch.Generator().manual_seed(6)
    backbone = random_extractor(gen)
    heads = {f"fc{i}.{w}": torch.randn((out, 528) if w == "weight" else (out,), generator=gen)
             for i, out in enumerate(HEADS, start=1) for w in ("weight", "bias")}
    ckpt = tmp_path / "backbone.pth"
    torch.save({"state_net": {**{f"module.backbone.{k}": v for k, v in backbone.items()},
                              **{f"module.{k}": v for k, v in heads.items()}}}, ckpt)
    base = ["run", "sdaie", "--suite", "folder", "--root", str(root), "--protocol", "train-on-seen", "-q",
            "--set", "epochs=1", "--set", "train_batch_size=4", "--set", "train_patches=1",
            "--set", "checkpoint_every=0"]
    missing = invoke(*base)
    assert_refused_naming(missing, "--set extractor=", "regulariser_weight=0")
    assert not (detbench_home / "runs").exists() or not list((detbench_home / "runs").rglob("run.json"))
    result = invoke(*base, "--set", f"extractor={ckpt}")
    assert result.exit_code == 0, result.output
    record, scores = released_run(detbench_home, "sdaie")
    assert record["key"]["detector_identity"]["extractor_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert record["fit"]["trained"] and record["fit"]["steps"] == 2 and (scores["status"] == "ok").all()
    from safetensors.torch import load_file

    [state] = list((detbench_home / "fits").rglob("model.safetensors")) if (detbench_home / "fits").exists() else [
        p for p in detbench_home.rglob("model.safetensors")]
    saved = load_file(str(state))
    for k, v in backbone.items():  # the pretext extractor is frozen: unchanged by training
        assert torch.equal(saved[f"diffusionextractor_pretrained.{k}"], v), k


def test_training_patches_are_seeded_random_crops() -> None:
    from detbench.detectors.sdaie_net import RandomPatches

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))
    aug = RandomPatches(16, 0.3, 0.1, 0.25, (90, 99))
    a, b = aug(img, np.random.default_rng(3)), aug(img, np.random.default_rng(3))
    assert a.shape == (16, 3, 64, 64) and torch.equal(a, b)
    plain = RandomPatches(4, 0.0, 0.0, 0.0, (90, 99))(img, np.random.default_rng(1))
    full = reference_patches_of(img)
    for crop in plain:  # every crop is a 64 px window of the normalised image
        assert any(torch.allclose(crop.double(), full[:, t:t + 64, s:s + 64], atol=1e-6)
                   for t in range(90 - 63) for s in range(120 - 63))


def reference_patches_of(img: Image.Image) -> torch.Tensor:
    return (torch.from_numpy(np.asarray(img).astype(np.float64) / 255.0).permute(2, 0, 1) - MEAN) / STD


# ---------------------------------------------------------------------------------------------- one-class


def test_one_class_mixture_scores_as_oc_funs(tmp_path: Path, detbench_home: Path) -> None:
    """variant=one-class: the mixture fitted on the real training images' features; the scores are
    0.5 (1 + z / (1 + |z|)) with z = (threshold - loglik) / scale and the threshold of val_GMM_sklearn, checked
    against the reference features and an independent log-density (in float32 and float64, bound below)."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    images = [("train/seen", "0_real", f"r{i}.png", 64 + 16 * (i % 3), 64) for i in range(8)]
    images += [("train/seen", "1_fake", "f0.png", 64, 64)]
    images += [("test/seen", label, f"t{i}.png", 70 + 9 * i, 64 + 5 * i) for i, label in
               enumerate(("0_real", "1_fake", "0_real", "1_fake", "1_fake"))]
    root = write_test_images(tmp_path / "oc", images, seed=8, noise=(6.0, 4.0))
    gen = torch.Generator().manual_seed(9)
    backbone = random_extractor(gen)
    heads = {f"module.fc{i}.{w}": torch.randn((out, 528) if w == "weight" else (out,), generator=gen)
             for i, out in enumerate(HEADS, start=1) for w in ("weight", "bias")}
    torch.save({"state_net": {**{f"module.backbone.{k}": v for k, v in backbone.items()}, **heads}},
               tmp_path / "backbone.pth")
    result = invoke("run", "sdaie", "--suite", "folder", "--root", str(root), "--protocol", "train-on-seen", "-q",
                    "--set", "variant=one-class", "--set", f"extractor={tmp_path / 'backbone.pth'}",
                    "--set", "gmm_components=2", "--set", "gmm_covariance=spherical")
    assert result.exit_code == 0, result.output
    record, scores = released_run(detbench_home, "sdaie")
    assert record["fit"]["n_real_train"] == 8 and (scores["status"] == "ok").all() and len(scores) == 5
    [state] = list(detbench_home.rglob("gmm.safetensors"))
    from safetensors.numpy import load_file

    gmm = load_file(str(state))
    meta = json.loads((state.parent / "gmm.json").read_text())

    def loglik(f: np.ndarray) -> np.ndarray:
        parts = [np.log(w) + multivariate_normal(m, c * np.eye(len(m))).logpdf(f)
                 for w, m, c in zip(gmm["weights"], gmm["means"].astype(np.float64), gmm["covariances"], strict=True)]
        return logsumexp(np.stack(parts, axis=1), axis=1)

    train = sorted(str(p.relative_to(root)) for p in (root / "train/seen/0_real").iterdir())
    tests = scores["path"].tolist()
    refs = {}
    for dtype in (torch.float32, torch.float64):
        ll_train = loglik(reference_features([root / q for q in train], backbone, dtype).double().numpy())
        threshold = np.sort(ll_train)[int(len(ll_train) * 0.02)]
        scale = np.std(ll_train)
        ll = loglik(reference_features([root / q for q in tests], backbone, dtype).double().numpy())
        z = (threshold - ll) / scale
        refs[dtype] = 0.5 * (1 + z / (1 + np.abs(z)))
        if dtype == torch.float64:
            assert meta["threshold"] == pytest.approx(threshold, rel=1e-4, abs=1e-3)
            assert meta["scale"] == pytest.approx(scale, rel=1e-3)
    # The bound: the log-density sums 528 float32 feature errors, each weighted by the mixture's inverse variance,
    # so two float32 forwards that sum in different orders (detbench's batched one, the reference's) land on either
    # side of the exact value: each within about the error one of them shows (err32), their difference within
    # twice it; 8 * err32 + 4 eps32 leaves a factor 4 over that. A wrong layer, crop, threshold or scale moves the
    # scores by > 1e-3 (checked: the bound stays below it).
    exact, err32 = refs[torch.float64], float(np.max(np.abs(refs[torch.float32] - refs[torch.float64])))
    bound = 8 * err32 + 4 * 2.0**-23
    assert bound < 1e-3 and exact.std() > 0.01
    np.testing.assert_array_less(np.abs(scores["score"].to_numpy() - exact), bound)


def test_the_mixture_is_the_originals_gaussian_mixture(tmp_path: Path) -> None:
    """train_GMM_sklearn: GaussianMixture(n_components=5, init_params='k-means++', random_state=42), the rest
    scikit-learn's defaults, as SDAIE's settings fit it; the saved arrays score exactly as the fitted mixture."""
    from sklearn.mixture import GaussianMixture

    from detbench.detectors.sdaie import SDAIEConfig
    from detbench.kit.mixture import RealMixture

    feats = np.random.default_rng(0).normal(size=(60, 6)).astype(np.float32)
    feats[:30] += 3
    c = SDAIEConfig()
    ours = RealMixture.fit(feats, components=c.gmm_components, covariance=c.gmm_covariance, seed=c.gmm_seed,
                           false_alarm=c.threshold_quantile, who="sdaie", init=c.gmm_init, max_iter=c.gmm_max_iter,
                           reg_covar=c.gmm_reg_covar)
    theirs = GaussianMixture(n_components=5, init_params="k-means++", random_state=42).fit(feats)
    np.testing.assert_array_equal(ours.gmm.score_samples(feats), theirs.score_samples(feats))
    ours.save(tmp_path)
    again = RealMixture.load(tmp_path, components=5, covariance="full", who="sdaie")
    np.testing.assert_array_equal(again.gmm.score_samples(feats), theirs.score_samples(feats))


def test_one_class_scores_keep_the_likelihood_ranking_far_below_the_threshold() -> None:
    """The original ranks by the raw log-likelihood (AP): images tens to thousands of scales below the threshold
    must keep distinct, ordered scores, not tie at 1.0."""
    from detbench.kit.mixture import one_class_probability

    loglik = -np.array([0.0, 1.0, 40.0, 80.0, 1e3, 1e5])  # threshold 0, scale 1
    scores = one_class_probability(loglik, 0.0, 1.0)
    assert scores[0] == 0.5 and scores[1] > 0.5 and (np.diff(scores) > 0).all() and (scores < 1).all()
    assert one_class_probability(np.array([3.0]), 0.0, 1.0)[0] < 0.5


def test_one_class_needs_the_extractor_and_refuses_weights(image_root: Path, tmp_path: Path) -> None:
    base = ["run", "sdaie", "--suite", "folder", "--root", str(image_root), "-q", "--set", "variant=one-class"]
    assert_refused_naming(invoke(*base, "--set", f"weights={tmp_path / 'x.pth'}"), "weights only with variant=binary")
    assert_refused_naming(invoke(*base, "--protocol", "eval"), "variant=one-class needs", "--set extractor=")
    torch.save({"fc.weight": torch.zeros(1, 512), "fc.bias": torch.zeros(1)}, tmp_path / "other.pth")
    assert_refused_naming(invoke(*base, "--protocol", "eval", "--set", f"extractor={tmp_path / 'other.pth'}"),
                          "missing", "backbone.", "unexpected", "fc.weight")


def test_registry_facts() -> None:
    from detbench.registry import DETECTORS

    info = DETECTORS.info("sdaie")
    assert info is not None and info.year == 2026 and info.weights_key == "weights" and info.training == "trains"


# ---------------------------------------------------------------------------------------------- EXIF pretext


CLASSIFIED = ("Make", "Model", "Flash", "MeteringMode", "ExposureMode", "WhiteBalance", "SceneCaptureType")
RANKED = ("ExposureTime", "FNumber", "ISOSpeedRatings", "FocalLength", "ExposureBiasValue", "MaxApertureValue",
          "FocalLengthIn35mmFilm")


def _camera_jpeg(path: Path, i: int, *, tags: bool = True) -> None:
    from PIL import ExifTags

    rng = np.random.default_rng(i)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(rng.integers(0, 255, (64 + 8 * (i % 2), 72, 3), dtype=np.uint8))
    if not tags:
        image.save(path, quality=92)
        return
    exif = Image.Exif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = ("Canon", "Nikon", "Canon")[i % 3], f"M{i % 2}"
    ifd = exif.get_ifd(0x8769)
    for k, name in enumerate(CLASSIFIED[2:]):
        ifd[ExifTags.Base[name]] = (i + k) % 3
    for k, name in enumerate(RANKED):
        ifd[ExifTags.Base[name]] = float(1 + (i * (k + 2)) % 7)
    image.save(path, quality=92, exif=exif.tobytes())


def test_pretext_targets_classify_frequent_values_and_count_what_is_missing() -> None:
    from detbench.detectors.sdaie_pretext import pretext_targets

    full = {**{t: "a" for t in CLASSIFIED}, **{t: 1.0 for t in RANKED}}
    rows = pd.DataFrame({"exif_tags": [
        json.dumps({**full, "Make": "b"}), json.dumps({**full, "Make": "b"}), json.dumps(full),
        json.dumps({**full, "Make": "c", "FNumber": 2.0}), json.dumps({**full, "Make": "d"}),
        json.dumps({**full, "Make": "e"}), json.dumps({**full, "Make": "f"}), json.dumps({**full, "Make": "g"}),
        json.dumps({**full, "Make": "h"}), None, json.dumps({k: v for k, v in full.items() if k != "Flash"})]})
    targets, usable, facts = pretext_targets(rows, RANKED)
    assert list(usable) == list(range(9)) and facts["without_exif_tags"] == 1 and facts["missing_tag"] == {"Flash": 1}
    # Make has 7 classes: the 6 most frequent values (ties by value), every other value the 7th
    assert facts["classes"]["Make"] == ["b", "a", "c", "d", "e", "f"]
    assert list(targets[:, 1]) == [0, 0, 1, 2, 3, 4, 5, 6, 6]
    assert list(targets[:, 2]) == [1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # FNumber ranks (position 2)


def test_pretext_loss_is_cross_entropy_and_probit_ranking() -> None:
    from scipy.stats import norm

    from detbench.detectors.sdaie_net import PretextNet
    from detbench.detectors.sdaie_pretext import pretext_loss

    torch.manual_seed(0)
    net = PretextNet().eval()
    first, second = torch.randn(3, 1, 3, 64, 64), torch.randn(3, 1, 3, 64, 64)
    t1 = torch.tensor([[2.0, 3, 1, 0, 5, 1, 2, 1, 0, 4, 3, 1, 2, 4]] * 3)
    t2 = t1.clone()
    t2[0, 0], t2[1, 2], t2[2, 12] = 9.0, 0.5, 2.0  # larger, smaller, equal (x1 >= x2 counts as 1)
    with torch.no_grad():
        got = float(pretext_loss(net, first, second, t1, t2))
        f1, f2 = net.backbone(first).double(), net.backbone(second).double()
    want = 0.0
    for pos in range(14):
        head = getattr(net, f"fc{pos + 1}")
        w, b = head.weight.detach().double(), head.bias.detach().double()
        o1, o2 = (f1 @ w.T + b).numpy(), (f2 @ w.T + b).numpy()
        if pos in (1, 5, 6, 9, 10, 11, 13):
            logp = o1 - np.log(np.exp(o1).sum(axis=1, keepdims=True))
            want += -np.mean(logp[np.arange(3), t1[:, pos].long().numpy()])
        else:
            p = norm.cdf(o1[:, 0] - o2[:, 0])
            y = (t1[:, pos] >= t2[:, pos]).double().numpy()
            want += -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert got == pytest.approx(want, rel=1e-5)


def test_pretext_training_on_the_indexed_exif_then_the_one_class_mixture(tmp_path: Path, detbench_home: Path) -> None:
    root = tmp_path / "cam"
    for i in range(6):
        _camera_jpeg(root / "train/seen/0_real" / f"r{i}.jpg", i)
        _camera_jpeg(root / "train/seen/1_fake" / f"f{i}.jpg", 10 + i, tags=False)
    for i in range(2):
        _camera_jpeg(root / "test/seen/0_real" / f"r{i}.jpg", 20 + i)
        _camera_jpeg(root / "test/seen/1_fake" / f"f{i}.jpg", 30 + i, tags=False)
    base = ["run", "sdaie", "--suite", "folder", "--root", str(root), "--protocol", "train-on-seen", "-q",
            "--set", "variant=one-class", "--set", "extractor=pretext", "--set", "pretext_steps=2",
            "--set", "pretext_batch_size=2", "--set", "train_patches=1", "--set", "gmm_components=2",
            "--set", "gmm_covariance=spherical"]
    result = invoke(*base)
    assert result.exit_code == 0, result.output
    record, scores = released_run(detbench_home, "sdaie")
    pretext = record["fit"]["pretext"]
    assert pretext["used"] == 6 and pretext["without_exif_tags"] == 0 and pretext["steps"] == 2
    assert pretext["classes"]["Make"] == ["Canon", "Nikon"] and pretext["last_loss"] is not None
    assert record["key"]["detector_identity"]["extractor"] == "pretext" and (scores["status"] == "ok").all()
    from detbench.progress import quiet
    from detbench.results.predict import predict_files  # the trained extractor is saved with the fit and reloaded

    predicted, _ = predict_files(record["run_id"][:12], [root / p for p in scores["path"]], phases=quiet())
    np.testing.assert_array_equal(predicted["score"].to_numpy(), scores["score"].to_numpy())  # batched alike

    result = invoke(*base[:8], "--set", "extractor=pretext", "--set", "pretext_steps=2", "--set",
                    "pretext_batch_size=2", "--set", "train_patches=1", "--set", "epochs=1", "--set",
                    "train_batch_size=4")  # binary: the regulariser's extractor
    assert result.exit_code == 0, result.output
    [fit] = [json.loads(p.read_text())["fit"] for p in detbench_home.rglob("run.json")
             if json.loads(p.read_text())["key"]["detector"]["config"]["variant"] == "binary"]
    assert fit["pretext"]["used"] == 6 and fit["trained"] and fit["steps"] == 3


def test_pretext_training_without_exif_is_refused_before_anything_is_written(tmp_path: Path,
                                                                            detbench_home: Path) -> None:
    root = tmp_path / "noexif"
    for split, n in (("train", 3), ("test", 1)):
        for label in ("0_real", "1_fake"):
            for i in range(n):
                _camera_jpeg(root / f"{split}/seen/{label}/{i}.jpg", i, tags=False)
    result = invoke("run", "sdaie", "--suite", "folder", "--root", str(root), "--protocol", "train-on-seen", "-q",
                    "--set", "extractor=pretext", "--set", "epochs=1", "--set", "train_batch_size=2")
    assert_refused_naming(result, "0 of 3 real training images", "3 carry none", "--set extractor=FILE")
    assert not list(detbench_home.rglob("run.json")) and not list(detbench_home.rglob("*.safetensors"))
