"""UnivFD's training recipe: the original's on-the-fly augmentation as seeded, cached views, and the head's loop.

The original augments every training image on the fly (Gaussian blur, JPEG, random crop, horizontal flip); with a
frozen backbone each augmented view is a :class:`TrainView` whose features are extracted once through the feature
cache. :func:`train_head` fits the linear head on those views as the original trains it (AdamW, 10x learning-rate
drops on held-out plateaus, stop below ``min_lr``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from detbench.probabilities import sigmoid

if TYPE_CHECKING:
    from PIL import Image

    from detbench.data.preprocess import Preprocess

AUGMENT_VERSION = 1


@dataclass(frozen=True)
class TrainView:
    """View ``view`` of every training image: the original's training augmentation, seeded per image.

    The draws depend only on (seed, view, image id), so a view is the same in every run and is cached once.
    Order as the original: resize policy, blur, JPEG, crop window, flip; the backbone's evaluation transform
    then only normalises (and pads images smaller than the crop). Blur and JPEG are the evaluation
    perturbations ``blur:S`` and ``jpeg:Q`` (scipy Gaussian, Pillow JPEG 4:2:0).
    """

    view: int
    seed: int
    preprocess: Preprocess
    blur_prob: float
    blur_sigma_max: float
    jpeg_prob: float
    jpeg_quality: tuple[int, int]
    crop_flip: bool

    def identity(self) -> dict[str, Any]:
        """What keys this view's cached features (the preprocessing is part of the backbone identity already).

        Returns:
            The kind, augmentation and step versions, and the view's fields.
        """
        from detbench.data.perturbations import GaussianBlur, JpegQuality

        d = dataclasses.asdict(self)
        d.pop("preprocess")  # already part of the backbone identity in the cache key
        d["jpeg_quality"] = list(self.jpeg_quality)  # JSON-native: the cache compares keys read back from disk
        steps = {"blur": GaussianBlur.version, "jpeg": JpegQuality.version}
        return {"kind": "univfd-train-view", "version": AUGMENT_VERSION, "steps": steps, **d}

    def draws(self, image_id: str) -> dict[str, Any]:
        """The random choices of this view for one image, from (seed, view, image id) alone.

        Args:
            image_id: the image's content id.

        Returns:
            ``sigma`` (None: no blur), ``quality`` (None: no JPEG), crop window position ``left``/``top`` as
            fractions in [0, 1), and ``flip``.
        """
        digest = hashlib.sha256(f"{self.seed}:{self.view}:{image_id}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        u_blur, u_sigma, u_jpeg, u_left, u_top, u_flip = rng.random(6)
        quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        return {
            "sigma": float(u_sigma * self.blur_sigma_max) if u_blur < self.blur_prob else None,
            "quality": quality if u_jpeg < self.jpeg_prob else None,
            "left": float(u_left),
            "top": float(u_top),
            "flip": bool(self.crop_flip and u_flip < 0.5),
        }

    def __call__(self, img: Image.Image, image_id: str) -> Image.Image:
        """This view of ``img``: the training augmentation drawn from (seed, view, ``image_id``)."""
        from PIL import Image

        from detbench.data.perturbations import GaussianBlur, JpegQuality

        pp = self.preprocess
        img = pp.resize_image(img)
        d = self.draws(image_id)
        if d["sigma"]:
            img = GaussianBlur(d["sigma"]).apply(img)
        if d["quality"] is not None:
            img = JpegQuality(d["quality"]).apply(img)
        if self.crop_flip:
            w, h = img.size
            left = int(d["left"] * (w - pp.crop + 1)) if w > pp.crop else 0
            top = int(d["top"] * (h - pp.crop + 1)) if h > pp.crop else 0
            img = img.crop((left, top, left + min(w, pp.crop), top + min(h, pp.crop)))
            if d["flip"]:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img


# ---------------------------------------------------------------------------------------------- head training


def train_head(
    x: np.ndarray,
    y: np.ndarray,
    x_held: np.ndarray,
    y_held: np.ndarray,
    cfg: Any,  # the detector's UnivFDConfig
    *,
    seed: int,
    device: str,
    advance: Any,
) -> dict[str, Any]:
    """Fit a linear head on views ``x`` [V, N, D] (each epoch draws one view per image) with the original recipe.

    AdamW with a 10x learning-rate drop after ``patience`` epochs without improvement; training stops once the
    rate falls below ``min_lr``. The epoch kept is the best on the held-out rows: ``selection_metric``, ties
    (within ``min_delta``) broken by the other of acc/AP, then by the held-out loss (a saturated accuracy must
    not freeze epoch 1).

    Args:
        x: the training features, one slice per view.
        y: ``[N]`` labels.
        x_held: ``[M, D]`` held-out features.
        y_held: ``[M]`` held-out labels.
        cfg: the settings.
        seed: seeds the initialisation, the order and the view draws.
        device: a torch device string.
        advance: called with 1 after every epoch, for progress.

    Returns:
        The best ``weight`` [D] and ``bias``, ``best_epoch``, ``epochs_run``, why it ``stopped`` and the history.
    """
    import torch

    from detbench.metrics import binary_metrics

    n_views, n, dim = x.shape
    dev = torch.device(device)
    xs, ys = torch.from_numpy(x).to(dev), torch.from_numpy(y.astype(np.float32)).to(dev)
    xh, yh = torch.from_numpy(x_held).to(dev), torch.from_numpy(y_held.astype(np.float32)).to(dev)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = torch.nn.Linear(dim, 1)  # bias keeps PyTorch's default init, as the original
    torch.nn.init.normal_(head.weight, 0.0, cfg.init_std, generator=gen)
    head.to(dev)
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    other = "ap" if cfg.selection_metric == "acc" else "acc"
    lr, stale, stopped = cfg.lr, 0, "max_epochs"
    best: dict[str, Any] | None = None
    history = []
    with _single_thread(dev.type):
        for epoch in range(1, cfg.max_epochs + 1):
            order = torch.randperm(n, generator=gen).to(dev)
            views = torch.randint(n_views, (n,), generator=gen).to(dev)
            head.train()
            total = torch.zeros((), device=dev)
            for start in range(0, n, cfg.train_batch_size):
                idx = order[start:start + cfg.train_batch_size]
                loss = loss_fn(head(xs[views[idx], idx]).squeeze(1), ys[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(idx)
            head.eval()
            with torch.no_grad():
                logits = head(xh).squeeze(1)
                held_loss = float(loss_fn(logits, yh))
                held = sigmoid(logits.double().cpu().numpy())
            metrics = binary_metrics(y_held, held)
            key = (*(float(np.nan_to_num(metrics[m], nan=-1.0)) for m in (cfg.selection_metric, other)), -held_loss)
            history.append({"epoch": epoch, "lr": lr, "train_loss": float(total) / n, "heldout_loss": held_loss,
                            "acc": metrics["acc"], "ap": metrics["ap"]})
            advance(1)
            if best is None or _improves(key, best["key"], cfg.min_delta):
                state = {k: v.detach().double().cpu().clone() for k, v in head.state_dict().items()}
                best, stale = {"key": key, "epoch": epoch, "state": state}, 0
                continue
            stale += 1
            if stale >= cfg.patience:
                lr, stale = lr / 10, 0
                if lr < cfg.min_lr * (1 - 1e-9):  # tolerance: 1e-4 / 100 must still count as 1e-6
                    stopped = "learning rate below min_lr"
                    break
                for group in optimizer.param_groups:
                    group["lr"] = lr
    assert best is not None
    return {
        "weight": best["state"]["weight"].numpy().reshape(dim),
        "bias": float(best["state"]["bias"][0]),
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "stopped": stopped,
        "history": history,
    }


@contextmanager
def _single_thread(device_type: str) -> Iterator[None]:
    """One CPU thread for the head: a 1-output linear layer gains nothing from more, and on a busy machine
    thread synchronisation made each step ~100x slower (measured: 25 ms against 0.2 ms).
    """
    import torch

    threads = torch.get_num_threads()
    if device_type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _improves(new: tuple[float, ...], best: tuple[float, ...], min_delta: float) -> bool:
    """Lexicographic comparison (higher is better) where differences within ``min_delta`` are ties."""
    for a, b in zip(new, best, strict=True):
        if a > b + min_delta:
            return True
        if a < b - min_delta:
            return False
    return False
