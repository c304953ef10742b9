"""UnivFD (Ojha et al., CVPR 2023): one linear layer on the frozen projected CLIP image embedding.

Either loads the released head (``head=PATH[#sha256=HEX]`` to ``fc_weights.pth``, trained on 20-class ProGAN; a
whole checkpoint's ``fc.*``, its other tensors counted, and refused when its backbone differs from the one loaded)
or trains one as the original does: BCE-with-logits, AdamW (lr 1e-4, no weight decay), weight init N(0, 0.02),
held-out accuracy with patience 5, learning rate divided by 10 on each plateau until it falls below 1e-6.
Every training image trains; the held-out images are the training generators' separate ``val`` split
(``train.holdout=val-split``): the original's ``train.py`` validates on a set apart from its training set (the
``val.pickle`` lists, or with ``--data_mode wang2020`` the ProGAN folder of its test set, which is evaluation data
here, so the CNNDetection ``val`` split stands in for it). Where the suite has no val split apart from its
evaluation data, 10 % of the training split is held out instead (recorded in ``run.json`` ``holdout``).

The original augments every training image on the fly (Gaussian blur with p=0.5, sigma ~ U[0, 3]; JPEG with
p=0.5, quality ~ U{30..100}; random crop; horizontal flip). With a frozen backbone this becomes ``aug_views``
seeded views per training image, each extracted once through the feature cache, plus the clean view; each
epoch draws one of an image's views. Features are the raw projected embedding (not L2-normalised), as the
released head expects, so the clean view shares its cache entry with ``linear-probe``.

The training recipe (the augmented views and the head's training loop) is ``detectors/univfd_train.py``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd

from detbench.kit.detector import RunContext
from detbench.kit.frozen_features import FrozenFeatureDetector
from detbench.probabilities import finite_rows, sigmoid

from .univfd_train import TrainView, train_head

if TYPE_CHECKING:
    from detbench.data.preprocess import Preprocess

RELEASED_BACKBONE = ("open_clip", "ViT-L-14", "openai")


@dataclass(frozen=True)
class UnivFDConfig:
    """UnivFD options: backbone, embedding, preprocessing, released head, or how the linear layer trains."""

    backbone: str = ""  # empty: the suite's default backbone (open_clip:ViT-L-14@openai for GenImage/UFD)
    embedding: str = ""  # empty: the backbone's default ("proj", the projected embedding, for open_clip)
    crop: int = 0  # 0: the backbone's native input size (224 for ViT-L/14)
    resize: Literal["", "none", "shorter", "stretch"] = ""  # "": the backbone's default ("none": centre crop)
    pad: Literal["", "mean", "black"] = ""  # small-image fill; "black" = the original evaluation (see README)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # forward pass: see detbench.models.precision
    head: str = ""  # released head (fc_weights.pth or a checkpoint with fc.weight/fc.bias)[#sha256=HEX]; empty: train
    aug_views: int = 2  # augmented views per training image, besides the clean view
    blur_prob: float = 0.5
    blur_sigma_max: float = 3.0  # sigma ~ U[0, blur_sigma_max]
    jpeg_prob: float = 0.5
    jpeg_quality_min: int = 30  # quality ~ U{min..max}
    jpeg_quality_max: int = 100
    crop_flip: bool = True  # augmented views also take a random crop window and a random horizontal flip
    lr: float = 1e-4
    weight_decay: float = 0.0
    init_std: float = 0.02
    train_batch_size: int = 256
    max_epochs: int = 100
    patience: int = 5  # epochs without held-out improvement before the learning rate drops 10x
    min_delta: float = 0.001  # smallest held-out gain that counts as an improvement
    min_lr: float = 1e-6  # training stops once the learning rate falls below this
    selection_metric: Literal["acc", "ap"] = "acc"
    batch_size: int = 64  # feature extraction
    # P(fake): the head and its sigmoid in float32, as validate.py's model(x).sigmoid() (saturated logits tie in
    # AP); float64 ranks them (a departure)
    sigmoid_dtype: Literal["float32", "float64"] = "float32"
    normalize: bool = field(default=False, init=False)  # raw embeddings, as the released head expects

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: naming every option out of range.
        """
        from detbench.config import ConfigError

        problems = []
        if self.aug_views < 0:
            problems.append("aug_views >= 0")
        if not (0 <= self.blur_prob <= 1 and 0 <= self.jpeg_prob <= 1):
            problems.append("blur_prob and jpeg_prob in [0, 1]")
        if self.blur_sigma_max < 0:
            problems.append("blur_sigma_max >= 0")
        if not 1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100:
            problems.append("1 <= jpeg_quality_min <= jpeg_quality_max <= 100")
        if self.lr <= 0 or self.min_lr <= 0 or self.weight_decay < 0 or self.init_std < 0:
            problems.append("lr > 0, min_lr > 0, weight_decay >= 0, init_std >= 0")
        if min(self.train_batch_size, self.batch_size, self.max_epochs, self.patience) < 1:
            problems.append("train_batch_size, batch_size, max_epochs and patience >= 1")
        if self.crop < 0 or self.min_delta < 0:
            problems.append("crop >= 0 (0: the backbone's size) and min_delta >= 0")
        if problems:
            raise ConfigError("univfd options need " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------- head


HEAD_FIX = ("pass --set head=/path/to/fc_weights.pth (the released head: pretrained_weights/fc_weights.pth in "
            "github.com/WisconsinAIVision/UniversalFakeDetect)")


def load_head(spec: str, dim: int, target: str) -> tuple[np.ndarray, float, dict[str, Any], dict[str, Any]]:
    """A released head: ``weight``/``bias`` (fc_weights.pth) or a whole UnivFD checkpoint's ``fc.weight``/``fc.bias``.

    Loaded weights-only (``PATH[#sha256=HEX]``, as every released file); the head's tensors must be floating point.
    A whole checkpoint's other tensors are not used here: they are returned, for :func:`compare_backbone`.

    Args:
        spec: the file, optionally pinned with a trailing ``#sha256=HEX``.
        dim: the embedding's dimension; the shapes must be exactly [1, dim] and [1].
        target: names the embedding in the message.

    Returns:
        ``(weight [dim] float64, bias, facts, ignored tensors)``; the facts name the path, sha256, keys used and how
        many tensors were ignored.

    Raises:
        WeightsError: the file is missing, unreadable or not the pinned one, its keys are not a head's, the shapes do
            not fit, or the head is not floating point.
    """
    from detbench.models.weights import WeightsError, check_floating, load_checkpoint_file

    loaded = load_checkpoint_file(spec, what="UnivFD head", fix=HEAD_FIX, key="head")
    sd, path = loaded.state_dict, loaded.path
    prefix = next((p for p in ("", "fc.") if f"{p}weight" in sd and f"{p}bias" in sd), None)
    if prefix is None or (prefix == "" and len(sd) != 2):
        found = ", ".join(sorted(sd)[:8]) + (", ..." if len(sd) > 8 else "")
        raise WeightsError(f"{path} is not a UnivFD head: expected exactly the keys weight and bias "
                           f"(fc_weights.pth) or fc.weight and fc.bias (a whole checkpoint); found {found}")
    weight, bias = sd[f"{prefix}weight"], sd[f"{prefix}bias"]
    check_floating({f"{prefix}weight": weight, f"{prefix}bias": bias}, f"the UnivFD head {path}")
    if tuple(weight.shape) != (1, dim) or tuple(bias.shape) != (1,):
        raise WeightsError(
            f"the head in {path} ({prefix}weight {list(weight.shape)}, {prefix}bias {list(bias.shape)}) "
            f"does not fit {target}: expected weight [1, {dim}] and bias [1]. The released UnivFD head "
            "belongs to open_clip:ViT-L-14@openai (768-d projected embedding).")
    ignored = {k: v for k, v in sd.items() if k not in (f"{prefix}weight", f"{prefix}bias")}
    info = {"path": str(path), "sha256": loaded.sha256, "keys": f"{prefix}weight, {prefix}bias",
            "ignored_keys": len(ignored)}
    return weight.double().numpy().reshape(dim), float(bias.double()), info, ignored


def compare_backbone(ignored: dict[str, Any], backbone: Any) -> dict[str, Any]:
    """Match a whole checkpoint's ignored tensors to the loaded backbone's and compare them.

    A whole UnivFD checkpoint holds its frozen CLIP under a prefix (``model.visual.conv1.weight``); the prefix is the
    one under which most ignored keys end in a key of the backbone's model. Tensors are equal when they agree after
    rounding the backbone's to the checkpoint's dtype (an fp16 checkpoint of the same weights matches), within
    1e-3 relative.

    Args:
        ignored: the checkpoint's tensors not used by the head.
        backbone: the loaded :class:`~detbench.models.backbones.Backbone`.

    Returns:
        ``{"prefix", "compared", "differ": [keys], "unmatched_backbone_keys"}``; ``compared`` is 0 when no ignored
        tensor is one of the backbone's (nothing can be said).
    """
    import torch

    own = backbone.model.state_dict()
    by_prefix: dict[str, dict[str, str]] = {}
    for key in ignored:
        parts = key.split(".")
        for i in range(len(parts)):
            suffix = ".".join(parts[i:])
            if suffix in own:
                by_prefix.setdefault(".".join(parts[:i]), {})[key] = suffix
                break
    if not by_prefix:
        return {"prefix": None, "compared": 0, "differ": [], "unmatched_backbone_keys": len(own)}
    prefix, pairs = max(by_prefix.items(), key=lambda kv: (len(kv[1]), len(kv[0])))
    differ = []
    for key, name in pairs.items():
        theirs, ours = ignored[key], own[name].detach().to("cpu")
        same = theirs.shape == ours.shape and theirs.is_floating_point() == ours.is_floating_point()
        if same and theirs.is_floating_point():
            rounded = ours.to(theirs.dtype).double()
            scale = float(rounded.abs().max()) if rounded.numel() else 0.0
            same = bool(torch.allclose(theirs.double(), rounded, rtol=1e-3, atol=1e-3 * scale))
        elif same:
            same = bool(torch.equal(theirs, ours.to(theirs.dtype)))
        if not same:
            differ.append(name)
    return {"prefix": prefix, "compared": len(pairs), "differ": differ,
            "unmatched_backbone_keys": len(own) - len(set(pairs.values()))}


def padded_count(rows: pd.DataFrame, pp: Preprocess) -> int:
    """How many rows' images (index width/height) get padded by the preprocessing.

    Args:
        rows: index rows (rows without a size are not counted).
        pp: the preprocessing.

    Returns:
        The count.
    """
    sizes = rows[["width", "height"]].dropna()
    return int(sum(pp.was_padded(int(w), int(h)) for w, h in sizes.itertuples(index=False)))


# ---------------------------------------------------------------------------------------------- detector


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "univfd",
    "class": "UnivFD",
    "summary": "UnivFD (CVPR 2023): one linear layer on frozen CLIP ViT-L/14 features; trained, or the released head.",
    "paper": "Ojha et al., CVPR",
    "year": 2023,
    "weights_key": "head",
    "released": "fc_weights.pth",
}


class UnivFD(FrozenFeatureDetector):
    """UnivFD (Ojha et al., CVPR 2023): one linear layer on frozen CLIP ViT-L/14 features."""

    name = REGISTRATION["name"]
    version = 1
    Config = UnivFDConfig
    summary = REGISTRATION["summary"]
    tiny_settings: ClassVar[dict[str, Any]] = {
        "backbone": "open_clip:detbench-tiny-vit@random", "max_epochs": 1, "aug_views": 1,
    }
    profile_defaults = {"small": {"crop": 128}}
    file_keys = {"head": ()}  # named by its sha256 in the identity
    default_holdout = "val-split"  # train.py validates on a set apart from its training images
    requires_heldout = True  # early stopping and the kept epoch need held-out images

    def needs_training(self) -> bool:
        """Whether :meth:`fit` trains: only when no released ``head`` is given.

        Returns:
            True without ``--set head=``.
        """
        return not self.config.head

    def setup(self, ctx: RunContext) -> None:
        """Load the backbone and, when given, the released head (warning when the backbone is not the original's:
        OpenAI's ViT-L/14, by its tag or a weight file resolved to that tag, e.g. ``FILE#tag=openai``).

        Args:
            ctx: the run context.

        Raises:
            ConfigError: the backbone does not offer the configured embedding.
            WeightsError: the head is missing, unreadable or does not fit the embedding, or it comes in a whole
                checkpoint whose backbone tensors differ from the loaded backbone's.
        """
        super().setup(ctx)
        self.dim = self.backbone.embed_dims[self.embedding]
        self.head_info: dict[str, Any] | None = None
        self.fit_facts: dict[str, Any] = {}
        if self.config.head:
            bb = self.backbone
            target = f"the {self.dim}-d {self.embedding!r} embedding of {bb.spec}"
            self.weight, self.bias, self.head_info, ignored = load_head(self.config.head, self.dim, target)
            if ignored:
                self._check_ignored(ignored, ctx)
            if (bb.provider, bb.arch, bb.pretrained_tag) != RELEASED_BACKBONE:  # the tag a file resolved to counts
                ctx.phases.warn(f"the released UnivFD head was trained on open_clip:ViT-L-14@openai features, "
                                f"not {bb.spec}")

    def _check_ignored(self, ignored: dict[str, Any], ctx: RunContext) -> None:
        """A whole checkpoint: count what the head leaves unused (recorded, warned) and refuse it when its backbone
        tensors differ from the loaded backbone's (the head was trained on other features).
        """
        from detbench.models.weights import WeightsError

        path, bb = self.head_info["path"], self.backbone
        found = compare_backbone(ignored, bb)
        self.head_info["ignored_backbone_compared"] = found["compared"]
        if found["differ"]:
            shown = ", ".join(found["differ"][:6]) + (", ..." if len(found["differ"]) > 6 else "")
            raise WeightsError(
                f"{path} holds a backbone beside its head, and {len(found['differ'])} of its "
                f"{found['compared']} backbone tensors (under {found['prefix'] or 'no prefix'!r}) differ from "
                f"{bb.spec}'s: {shown}. The head was trained on that backbone's features, not on these: pass "
                "--set backbone= the backbone it holds, or a head file trained on this one.")
        if found["compared"]:
            what = (f"{found['compared']} of them the backbone's tensors, equal to {bb.spec}'s"
                    + (f" ({found['unmatched_backbone_keys']} of the backbone's tensors are not in the file)"
                       if found["unmatched_backbone_keys"] else ""))
        else:
            what = f"none of them a tensor of {bb.spec}, so its backbone cannot be compared with the one loaded"
        ctx.phases.warn(f"UnivFD head {path}: only fc.weight and fc.bias are used; {len(ignored)} other tensors "
                        f"are ignored ({what})")

    def identity(self) -> dict[str, Any]:
        """What enters the run identity beyond the config.

        Returns:
            The frozen-feature identity and the released head's sha256 (None when trained).
        """
        return {**super().identity(), "head_sha256": self.head_info["sha256"] if self.head_info else None}

    def train_view(self, view: int, seed: int) -> TrainView:
        """The augmentation of training view ``view``.

        Args:
            view: the view number, from 0.
            seed: the run seed.

        Returns:
            The :class:`TrainView`.
        """
        c = self.config
        return TrainView(view=view, seed=seed, preprocess=self.backbone.preprocess, blur_prob=c.blur_prob,
                         blur_sigma_max=c.blur_sigma_max, jpeg_prob=c.jpeg_prob,
                         jpeg_quality=(c.jpeg_quality_min, c.jpeg_quality_max), crop_flip=c.crop_flip)

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Train the head on the clean and ``aug_views`` augmented views, or nothing for a released head.

        Args:
            train: the training rows.
            heldout: the held-out rows (epoch selection, clean).
            ctx: the run context.

        Returns:
            Facts for the run record: the head's origin, the training facts of :func:`train_head`, image and view
            counts, and how many images the preprocessing pads.

        Raises:
            DataError: the usable training images lack a class, or no held-out image is usable.
        """
        pp = self.backbone.preprocess
        padded = {"train": padded_count(train, pp), "heldout": padded_count(heldout, pp),
                  "policy": f"resize={pp.resize}, crop={pp.crop}"}
        if self.head_info is not None:
            self.fit_facts = {"head": "released", "head_path": self.head_info["path"],
                              "head_sha256": self.head_info["sha256"], "head_keys": self.head_info["keys"],
                              "head_ignored_tensors": self.head_info["ignored_keys"]}
            if "ignored_backbone_compared" in self.head_info:
                self.fit_facts["head_ignored_backbone_tensors_equal"] = self.head_info["ignored_backbone_compared"]
            return {**self.fit_facts, "trained": False, "padded": padded}
        c = self.config
        x = np.empty((1 + c.aug_views, len(train), self.dim), dtype=np.float32)
        x[0] = self.features(train, ctx, "features (train, clean)", perturb=False)[0]
        for v in range(c.aug_views):
            view_ctx = dataclasses.replace(ctx, perturbation=self.train_view(v, ctx.seed))
            label = f"features (train, view {v + 1}/{c.aug_views})"
            x[v + 1] = self.features(train, view_ctx, label, perturb=True)[0]
        keep = np.isfinite(x).all(axis=(0, 2))
        y = train["label"].to_numpy()[keep]
        if not keep.all():
            x = x[:, keep]
        x_held = self.features(heldout, ctx, "features (held-out)", perturb=False)[0]
        keep_held = finite_rows(x_held)
        x_held, y_held = x_held[keep_held], heldout["label"].to_numpy()[keep_held]
        if len(np.unique(y)) < 2 or len(y_held) == 0:
            from detbench.errors import DataError

            raise DataError(f"univfd needs usable real and fake training images and a non-empty held-out split; "
                            f"{len(y)} training and {len(y_held)} held-out images loaded")
        with ctx.phases.phase("train head", c.max_epochs) as advance:
            result = train_head(x, y, x_held, y_held, c, seed=ctx.seed, device=ctx.device, advance=advance)
        self.weight, self.bias = result.pop("weight"), result.pop("bias")
        self.fit_facts = {"head": "trained", "best_epoch": result["best_epoch"]}
        return {**result, "head": "trained", "trained": True, "n_train_images": int(len(y)),
                "n_views": 1 + c.aug_views, "n_heldout_used": int(len(y_held)), "padded": padded}

    def decision(self, feats: np.ndarray) -> np.ndarray:
        """P(fake) of raw embeddings: the sigmoid of the linear head, in ``sigmoid_dtype``.

        float32 is the original's ``fc`` layer and ``sigmoid()`` on float32 tensors (logits above about 16.6 all
        give exactly 1.0); float64 computes both in float64.

        Args:
            feats: ``[N, D]`` finite embeddings.

        Returns:
            ``[N]`` probabilities.
        """
        if self.config.sigmoid_dtype == "float64":
            return sigmoid(feats.astype(np.float64) @ self.weight + self.bias)
        import torch

        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
        weight = torch.as_tensor(self.weight, dtype=torch.float32)[None]
        bias = torch.tensor([self.bias], dtype=torch.float32)
        return sigmoid(torch.nn.functional.linear(x, weight, bias)[:, 0].numpy(), "float32")

    def predict(self, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
        """P(fake) per row (:meth:`decision` on the perturbed embeddings); padded-image counts per generator go to
        ``ctx.extra["padded"]``.

        Args:
            rows: the rows to score.
            ctx: the run context.

        Returns:
            Scores (NaN where an image failed) and failure reasons by row position.
        """
        scores, failures = super().predict(rows, ctx)
        self._count_padded(rows, ctx)
        return scores, failures

    def _count_padded(self, rows: pd.DataFrame, ctx: RunContext) -> None:
        """Per stage and generator: images padded by the preprocessing / images scored (in ``ctx.extra``)."""
        stage = ctx.extra.setdefault("padded", {}).setdefault(ctx.stage, {})
        pp = self.backbone.preprocess
        for generator, group in rows.groupby("generator", sort=True):
            counts = stage.setdefault(str(generator), {"padded": 0, "total": 0})
            counts["padded"] += padded_count(group, pp)
            counts["total"] += int(len(group))

    def head_parameter_count(self) -> int:
        """The linear head's parameters (released or trained).

        Returns:
            ``D + 1``: its weight and bias.
        """
        return int(np.size(self.weight)) + 1

    def save(self, directory: Path) -> None:
        """Write the head (safetensors, float32) and its fit facts (JSON).

        Args:
            directory: the state folder (created if missing).
        """
        from safetensors.numpy import save_file

        directory.mkdir(parents=True, exist_ok=True)
        save_file({"weight": self.weight.astype(np.float32).reshape(1, -1),
                   "bias": np.array([self.bias], dtype=np.float32)}, str(directory / "head.safetensors"))
        (directory / "head.json").write_text(json.dumps(self.fit_facts, sort_keys=True))

    def load(self, directory: Path) -> None:
        """Restore the head written by :meth:`save`.

        Args:
            directory: the state folder.

        Raises:
            WeightsError: the head does not fit this run's features.
        """
        weight, bias, _, _ = load_head(str(directory / "head.safetensors"), self.dim,
                                       f"this run's {self.dim}-d features")
        self.weight, self.bias = weight, bias
        self.fit_facts = json.loads((directory / "head.json").read_text())
