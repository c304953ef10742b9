"""TSG, Time Step Generating (Zeng et al., "Time Step Generating: A Universal Synthesized Deepfake Image Detector",
arXiv 2411.11016, 2024): the noise a pre-trained diffusion UNet predicts for an image at a chosen time step, fed to a
ResNet-50 that says real or fake.

No code or weights have been released, so this is a documented reconstruction (every open choice a setting, the
reasons in the README section):

- **Feature**: the clean image is passed to the UNet with the time step ``t`` (``timestep``, default 0); no noise is
  added and nothing is inverted or reconstructed (what the paper's abstract sets TSG apart by). The feature is the
  predicted noise ``eps(x, t)``: the first three output channels (a UNet that also predicts its variance has six).
- **Input**: the image resized to ``size`` x ``size`` (``resize=stretch``, the diffusion model's square input;
  ``shorter`` resizes the shorter side and centre-crops), bilinear, scaled to [-1, 1] (the range diffusion models are
  trained on).
- **UNet**: a diffusers ``UNet2DModel`` (``unet``: a folder with ``config.json`` and
  ``diffusion_pytorch_model.safetensors``/``.bin``, or a Hugging Face repository id found in the local Hugging Face
  cache), loaded strictly; ``unet=tiny@random`` is a seeded random one-level UNet, recorded as a stand-in.
- **Classifier**: torchvision's ResNet-50 on the ``[3, size, size]`` noise map, ``fc = Linear(2048, 1)`` (N(0, 0.02)),
  started from ImageNet weights (``init``, as CNNSpot's), BCE-with-logits, Adam; after every epoch the held-out
  images are scored and the most accurate epoch is kept.

The UNet is frozen, so its noise maps go through detbench's feature cache: the UNet runs once per image (and
perturbation), the ResNet trains and scores on the cached maps.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from detbench.config import ConfigError
from detbench.kit.detector import Detector, RunContext
from detbench.models.diffusion import CONFIG_FILE, WEIGHTS_FILES

STATE_FILE = "tsg.safetensors"
FACTS_FILE = "tsg.json"
RANDOM_UNET = "tiny@random"  # the seeded stand-in UNet of tests and offline demos
_STEP_STREAM = 2  # the seed stream of training steps (torch's RNG is reseeded from (seed, stream, step))
_UNET_FIX = (f"pass --set unet=FOLDER (a diffusers UNet2DModel folder: {CONFIG_FILE} and {WEIGHTS_FILES[0]}), a "
             "Hugging Face repository id already in the local Hugging Face cache, or --set unet=tiny@random for a "
             "random stand-in (recorded as one)")
_TINY_UNET = {  # one resolution level, 16 channels: a stand-in of the same family, never presented as pretrained
    "in_channels": 3, "out_channels": 3, "layers_per_block": 1, "block_out_channels": [16],
    "down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"], "norm_num_groups": 8,
}


@dataclass(frozen=True)
class TSGConfig:
    """TSG options: the UNet and its time step, the input size, and the ResNet-50's training recipe."""

    unet: str = "google/ddpm-ema-bedroom-256"  # diffusers UNet2DModel folder or cached repo id; tiny@random: stand-in
    timestep: int = 0  # the time step t the UNet is given with the clean image
    size: int = 256  # the UNet's input side (the paper's diffusion models are 256 x 256)
    resize: Literal["stretch", "shorter"] = "stretch"  # stretch to size x size, or shorter side + centre crop
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"  # the UNet and ResNet forward passes
    batch_size: int = 16  # UNet batch (feature extraction) and scoring batch
    init: str = "imagenet"  # ResNet-50 start: imagenet, random (a stand-in), or a ResNet-50 file[#sha256=HEX]
    init_gain: float = 0.02  # std of the new fc weights
    lr: float = 1e-4
    beta1: float = 0.9
    train_batch_size: int = 32
    epochs: int = 10  # the most accurate held-out epoch is kept

    def validate(self) -> None:
        """Check the option ranges (called after every ``--set``).

        Raises:
            ConfigError: naming every option out of range.
        """
        checks = [
            (bool(self.unet), "unet set (a folder, a cached repo id or tiny@random)"),
            (self.timestep >= 0, "timestep >= 0"),
            (self.size >= 8, "size >= 8"),
            (self.batch_size >= 1 and self.train_batch_size >= 1, "batch_size and train_batch_size >= 1"),
            (self.lr > 0 and 0 <= self.beta1 < 1 and self.init_gain > 0, "lr > 0, 0 <= beta1 < 1, init_gain > 0"),
            (self.epochs >= 1, "epochs >= 1"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError("tsg options need " + "; ".join(problems))


REGISTRATION = {  # read by detbench.registry without importing this module: literals only
    "name": "tsg",
    "class": "TSG",
    "summary": "ResNet-50 on the noise a frozen diffusion UNet predicts for the clean image at time step t.",
    "paper": "Zeng et al., arXiv 2411.11016 (ACM MM Asia)",
    "year": 2024,
    "training": "trains",
    "weights_key": "",
    "released": "none (no code or weights released; a reconstruction)",
}


# ---------------------------------------------------------------------------------------------- the UNet


def _diffusers() -> Any:
    from detbench.models.diffusion import diffusers_library

    return diffusers_library("tsg's diffusion UNet")


class NoiseMap(nn.Module):
    """``[B, 3, S, S]`` images in [-1, 1] -> ``[B, 3 * S * S]``: the UNet's predicted noise at time step ``t``.

    Args:
        unet: a diffusers ``UNet2DModel``.
        timestep: the time step given with every image.
    """

    def __init__(self, unet: nn.Module, timestep: int) -> None:
        super().__init__()
        self.unet, self.timestep = unet, timestep

    def forward(self, x: Tensor) -> Tensor:
        """The flattened noise prediction (its first three channels: a learned-variance UNet outputs six).

        Args:
            x: the images.

        Returns:
            ``[B, 3 * H * W]``.
        """
        t = torch.full((x.shape[0],), self.timestep, dtype=torch.long, device=x.device)
        return self.unet(x, t).sample[:, :3].flatten(1)


def _tiny_unet(size: int) -> tuple[nn.Module, dict[str, Any]]:
    from detbench.models.backbones.backbone import seeded

    config = {**_TINY_UNET, "sample_size": size}
    with seeded():
        model = _diffusers().UNet2DModel(**config)
    return model, {"source": "random", "pretrained": False, "weights_sha256": None,
                   "note": "stand-in: a seeded random one-level UNet, not a pre-trained diffusion model"}


def load_unet(spec: str, size: int) -> tuple[nn.Module, dict[str, Any]]:
    """A frozen diffusers ``UNet2DModel``: built from its ``config.json``, its weights loaded strictly.

    Args:
        spec: a folder, a Hugging Face repository id (looked up in the local cache only) or ``tiny@random``.
        size: the input side (the stand-in's ``sample_size``).

    Returns:
        The model (eval mode) and the facts that identify it (source, sha256, config, pretrained).

    Raises:
        WeightsError: diffusers is missing, the files are missing or the weights do not fit the config.
    """
    from detbench.models.backbones.backbone import seeded
    from detbench.models.diffusion import build_from_config, find_diffusers_files, load_strictly

    if spec == RANDOM_UNET:
        model, facts = _tiny_unet(size)
    else:
        diffusers = _diffusers()
        what = f"the TSG diffusion UNet {spec}"
        files = find_diffusers_files(spec, what=what, fix=_UNET_FIX, subfolder="unet")
        assert files.config is not None
        with seeded():
            model = build_from_config(diffusers.UNet2DModel, files.config, what=what, fix=_UNET_FIX)
        load_strictly(model, files.weights, "the TSG diffusion UNet")
        facts = {"source": files.origin, "pretrained": True, "weights_sha256": files.sha256}
    facts["config"] = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), json.loads(json.dumps(facts, default=list))  # JSON-native: cache keys are compared read back


def noise_backbone(unet: nn.Module, facts: dict[str, Any], config: TSGConfig) -> Any:
    """The UNet's noise map as a :class:`~detbench.models.backbones.Backbone`, so the feature cache stores it.

    Args:
        unet: the loaded UNet.
        facts: :func:`load_unet`'s facts.
        config: the TSG config (time step, size, resize).

    Returns:
        A backbone with one embedding, ``noise`` (``3 * size * size`` values per image).
    """
    import diffusers

    from detbench.data.preprocess import Preprocess
    from detbench.models.backbones import Backbone
    from detbench.models.backbones.backbone import major_minor

    preprocess = Preprocess(crop=config.size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize=config.resize,
                            interpolation="bilinear", pad="black")
    return Backbone(
        spec=f"diffusers:UNet2DModel@{facts['source']}", provider="diffusers", arch="UNet2DModel",
        source=facts["source"], model=NoiseMap(unet, config.timestep), kind="diffusers-unet", preprocess=preprocess,
        pretrained=facts["pretrained"], weights_path=None, weights_sha256=facts["weights_sha256"],
        embed_dims={"noise": 3 * config.size * config.size}, default_embedding="noise", patch_size=None,
        model_cfg={"unet": facts["config"], "timestep": config.timestep, "channels": 3},
        versions={"torch": major_minor(torch.__version__), "diffusers": major_minor(diffusers.__version__)},
    )


# ---------------------------------------------------------------------------------------------- the detector


class TSG(Detector):
    """TSG (Zeng et al., 2024): a ResNet-50 on a frozen diffusion UNet's noise prediction at time step t."""

    name = REGISTRATION["name"]
    version = 1
    Config = TSGConfig
    summary = REGISTRATION["summary"]
    requires_heldout = True  # the kept epoch is the most accurate on the held-out images
    file_keys = {"unet": (RANDOM_UNET,), "init": ("imagenet", "random")}  # named by their sha256 in the identity
    tiny_settings: ClassVar[dict[str, Any]] = {
        "unet": RANDOM_UNET, "size": 32, "init": "random", "epochs": 1, "train_batch_size": 8,
    }
    profile_defaults = {
        # "small" (the demo, offline on CPUs): the random stand-in UNet at 64 px and a randomly started ResNet-50
        # (no diffusion or ImageNet weights offline), both recorded as stand-ins.
        "small": {"unet": RANDOM_UNET, "size": 64, "init": "random", "epochs": 3, "lr": 1e-3},
    }

    def setup(self, ctx: RunContext) -> None:
        """Load the UNet (strictly) and resolve the precision.

        Args:
            ctx: the run context (its device resolves ``precision``).

        Raises:
            WeightsError: the UNet's files or the diffusers library are missing, or the weights do not fit.
        """
        from detbench.models.precision import resolve_precision

        unet, self.unet_facts = load_unet(self.config.unet, self.config.size)
        self.backbone = noise_backbone(unet, self.unet_facts, self.config)
        self.precision = resolve_precision(self.config.precision, ctx.device)
        self.net: nn.Module | None = None
        self.fit_facts: dict[str, Any] = {}

    def identity(self) -> dict[str, Any]:
        """What enters the run identity beyond the config.

        Returns:
            The noise map's identity (UNet config and sha256, time step, preprocessing, versions) and the precision.
        """
        return {"unet": self.backbone.identity(), "precision": self.precision}

    def _noise_maps(self, rows: pd.DataFrame, ctx: RunContext, description: str,
                    perturb: bool) -> tuple[np.ndarray, dict[int, str]]:
        """The cached noise maps of ``rows`` (``[N, 3 * S * S]``, NaN rows for failed images) and the failures."""
        perturbation = ctx.perturbation if perturb else None
        with ctx.phases.phase(description, len(rows)) as advance:
            feats, failures, counts = ctx.feature_cache.extract(
                self.backbone, ctx.suite_root, rows, embedding="noise", perturbation=perturbation,
                batch_size=ctx.batch_size or self.config.batch_size, workers=ctx.workers, device=ctx.device,
                precision=self.precision, advance=advance)
        ctx.extra.setdefault("feature_counts", []).append({"phase": description, **counts})
        return feats, failures

    def _maps(self, feats: np.ndarray) -> Tensor:
        side = self.config.size
        return torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).view(-1, 3, side, side)

    def _logits(self, feats: np.ndarray, device: str) -> np.ndarray:
        """The ResNet's logits of finite noise maps, batch by batch."""
        from detbench.models.precision import autocast

        assert self.net is not None
        self.net.to(device).eval()
        out = []
        with torch.inference_mode(), autocast(self.precision, device):
            for start in range(0, len(feats), self.config.batch_size):
                x = self._maps(feats[start:start + self.config.batch_size]).to(device)
                out.append(self.net(x).float().reshape(-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Extract (or read from the cache) the noise maps, then train the ResNet-50 on them.

        Epoch ``e`` visits the training maps in :func:`~detbench.kit.training.epoch_order` ``(seed, e)``; torch's
        RNG is reseeded from ``(seed, step)`` before every step; the kept state is the epoch with the best held-out
        accuracy (the earlier on ties).

        Args:
            train: the training rows.
            heldout: the held-out rows of the training generator (selection only).
            ctx: the run context.

        Returns:
            The ResNet's start, the per-epoch history, the kept epoch and the image counts.

        Raises:
            DataError: the usable training images lack a class.
        """
        from detbench.detectors.cnnspot import imagenet_start
        from detbench.errors import DataError
        from detbench.kit.seeded_data import derive_seed
        from detbench.kit.training import bce_with_logits, epoch_order
        from detbench.metrics import binary_metrics
        from detbench.models.precision import autocast
        from detbench.probabilities import finite_rows, sigmoid

        x_train, _ = self._noise_maps(train, ctx, "noise maps (train)", perturb=False)
        x_held, _ = self._noise_maps(heldout, ctx, "noise maps (held-out)", perturb=False)
        ok_train, ok_held = finite_rows(x_train), finite_rows(x_held)
        y_train = train["label"].to_numpy()[ok_train].astype(np.float32)
        y_held = heldout["label"].to_numpy()[ok_held]
        x_train, x_held = x_train[ok_train], x_held[ok_held]
        if len(np.unique(y_train)) < 2:
            raise DataError(f"tsg needs usable real and fake training images; {len(y_train)} loaded "
                            f"({int((y_train == 0).sum())} real, {int((y_train == 1).sum())} fake)")
        from detbench.models.backbones.backbone import seeded

        with seeded(ctx.seed):
            self.net, start = imagenet_start(self.config.init, self.config.init_gain)
        device, bs, n = ctx.device, self.config.train_batch_size, len(y_train)
        net = self.net.to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.config.lr, betas=(self.config.beta1, 0.999))
        history: list[dict[str, Any]] = []
        best: tuple[float, dict[str, Tensor]] | None = None
        kept = 1
        step, steps_per_epoch = 0, math.ceil(n / bs)
        with ctx.phases.phase("train tsg", self.config.epochs * steps_per_epoch) as advance:
            for epoch in range(self.config.epochs):
                order, losses = epoch_order(n, ctx.seed, epoch), []
                net.train()
                for b in range(steps_per_epoch):
                    idx = order[b * bs:(b + 1) * bs]
                    torch.manual_seed(derive_seed(ctx.seed, _STEP_STREAM, step))
                    x, y = self._maps(x_train[idx]).to(device), torch.from_numpy(y_train[idx]).to(device)
                    with autocast(self.precision, device):
                        logits = net(x)
                    loss = bce_with_logits(logits.float(), y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    losses.append(float(loss.detach()) * len(idx))
                    step += 1
                    advance(1)
                entry: dict[str, Any] = {"epoch": epoch + 1, "train_loss": sum(losses) / n}
                acc = -1.0
                if len(y_held):
                    metrics = binary_metrics(y_held, sigmoid(self._logits(x_held, device)))
                    acc = float(metrics["acc"])
                    entry.update(heldout_acc=acc, heldout_ap=float(metrics["ap"]))
                history.append(entry)
                ctx.phases.log(f"tsg epoch {epoch + 1}: train loss {entry['train_loss']:.4f}"
                               + (f", held-out acc {acc:.3f}" if len(y_held) else ""))
                if best is None or acc > best[0]:
                    best = (acc, {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()})
                    kept = epoch + 1
        assert best is not None
        net.load_state_dict(best[1])
        self.fit_facts = {**start, "history": history, "kept_epoch": kept, "n_train_used": int(n),
                          "n_heldout_used": int(len(y_held))}
        if not self.unet_facts["pretrained"]:
            self.fit_facts["unet_note"] = self.unet_facts["note"]
        return dict(self.fit_facts)

    def predict(self, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
        """P(fake) per row: the ResNet's sigmoid on the (perturbed) noise maps of the images that could be read.

        Args:
            rows: the rows to score.
            ctx: the run context.

        Returns:
            Scores (NaN where an image failed) and failure reasons by row position.
        """
        from detbench.probabilities import score_finite_rows, sigmoid

        feats, failures = self._noise_maps(rows, ctx, f"noise maps ({ctx.stage})", perturb=True)
        return score_finite_rows(feats, lambda ok: sigmoid(self._logits(ok, ctx.device))), failures

    def cost_forward(self, ctx: RunContext, generator: str) -> Any:
        """The UNet's noise prediction and the ResNet on it, for one preprocessed image.

        Args:
            ctx: the run context (unused).
            generator: the generator of the image counted (unused: every image is preprocessed alike).

        Returns:
            The forward, its transform, the UNet and the ResNet (only the ResNet trains).
        """
        from detbench.detectors.cnnspot import build_resnet50
        from detbench.kit.cost import CostForward

        net = self.net if self.net is not None else build_resnet50(1)
        noise = self.backbone.model

        def forward(x: Tensor) -> Tensor:
            return net(noise(x).view(-1, 3, self.config.size, self.config.size))

        return CostForward(forward, self.backbone.preprocess.eval_transform(), (noise, net),
                           trainable=sum(p.numel() for p in net.parameters()))

    def save(self, directory: Path) -> None:
        """Write the ResNet-50 (safetensors) and its fit facts (JSON).

        Args:
            directory: the state folder (created if missing).
        """
        from safetensors.torch import save_file

        assert self.net is not None
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(directory / STATE_FILE))
        (directory / FACTS_FILE).write_text(json.dumps(self.fit_facts, indent=1, sort_keys=True))

    def load(self, directory: Path) -> None:
        """Restore the ResNet-50 written by :meth:`save`, strictly.

        Args:
            directory: the state folder.

        Raises:
            WeightsError: the state is missing, unreadable or not a one-logit ResNet-50's.
        """
        from detbench.detectors.cnnspot import build_resnet50
        from detbench.models.weights import load_into, load_state_dict_safely

        net = build_resnet50(1)
        load_into(net, load_state_dict_safely(directory / STATE_FILE), f"tsg state {directory}")
        self.net = net.eval()
        try:
            self.fit_facts = json.loads((directory / FACTS_FILE).read_text())
        except (OSError, ValueError):
            self.fit_facts = {}
