"""UnivFD's evaluation loop (WisconsinAIVision/UniversalFakeDetect): ``validate.py`` (its ``__main__``,
``RealFakeDataset`` and ``validate``) with ``models/clip_models.py`` ``CLIPModel``, re-derived from their semantics.

- Model: ``CLIPModel('ViT-L/14')``: ``clip.load(name, device='cpu')`` (OpenAI's ``build_model`` from the state dict,
  then ``model.float()`` on the CPU) and ``fc = Linear(768, 1)`` (``CHANNELS``; 1024 for ``RN50``, the other
  architecture ``get_model`` accepts); the head ``torch.load(ckpt)`` loaded into ``model.fc``; ``model.eval()``. The
  forward is ``fc(model.encode_image(x))``.
- Data: ``RealFakeDataset(root, root, 'wang2020', max_sample=1000, arch)``: files found by ``os.walk`` whose path
  holds ``0_real`` / ``1_fake`` and whose first extension is png, jpg, JPEG, jpeg or bmp, each list shuffled
  (``random.shuffle`` after ``set_seed``) and cut to ``max_sample`` (100 when a class has fewer); per image PIL open +
  ``convert('RGB')``, ``CenterCrop(224)`` (padding smaller images), ``ToTensor``, CLIP ``Normalize``.
- Loader: ``batch_size`` 128 (``--batch_size``), ``num_workers=4``, no shuffling.
- Loop: under ``torch.no_grad()``, ``model(img).sigmoid().flatten().tolist()``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from detbench.perf.originals import Checkpoint, calibrate_head

SOURCE = "WisconsinAIVision/UniversalFakeDetect validate.py validate"
BATCH_SIZE = 128
WORKERS = 4
MAX_SAMPLE = 1000
CHANNELS = {"ViT-L-14": 768, "RN50": 1024}  # the original's names: ViT-L/14, RN50 (open_clip spells them so)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class _RealFakeDataset:
    """``RealFakeDataset`` in ``wang2020`` mode, no JPEG or blur."""

    def __init__(self, root: Path) -> None:
        import torchvision.transforms as T

        random.seed(0)  # set_seed()
        real, fake = self._read(root, "0_real"), self._read(root, "1_fake")
        max_sample = MAX_SAMPLE if MAX_SAMPLE <= min(len(real), len(fake)) else 100
        random.shuffle(real)
        random.shuffle(fake)
        real, fake = real[:max_sample], fake[:max_sample]
        self.total_list = real + fake
        self.labels = {p: 0 for p in real} | {p: 1 for p in fake}
        self.transform = T.Compose([T.CenterCrop(224), T.ToTensor(), T.Normalize(mean=CLIP_MEAN, std=CLIP_STD)])

    @staticmethod
    def _read(root: Path, must_contain: str) -> list[str]:
        exts = ["png", "jpg", "JPEG", "jpeg", "bmp"]
        return [os.path.join(r, f) for r, _d, files in os.walk(root) for f in files
                if f.split(".")[1] in exts and must_contain in os.path.join(r, f)]

    def __len__(self) -> int:
        return len(self.total_list)

    def __getitem__(self, idx: int) -> tuple[Any, int]:
        from PIL import Image

        path = self.total_list[idx]
        return self.transform(Image.open(path).convert("RGB")), self.labels[path]


def _clip_model(state_dict: dict[str, Any], arch: str) -> Any:
    """``CLIPModel(name)``: OpenAI's CLIP built from its state dict (``clip.load`` with ``jit=False``, the CPU's
    ``model.float()``) and the 1-logit ``fc``.
    """
    import torch
    from open_clip.model import build_model_from_openai_state_dict
    from torch import nn

    class CLIPModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = build_model_from_openai_state_dict(dict(state_dict)).float()
            self.fc = nn.Linear(CHANNELS[arch], 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.model.encode_image(x))

    return CLIPModel()


def write_checkpoint(folder: Path, root: Path, seed: int = 0, arch: str = "ViT-L-14") -> Checkpoint:
    """Seeded random OpenAI CLIP weights as a float16 state dict (the layout ``clip.load`` reads from a file, in
    OpenAI's release precision) and a head as ``pretrained_weights/fc_weights.pth`` (``weight`` [1, D], ``bias``).

    Args:
        folder: where to write ``{arch}.pt`` and ``fc_weights.pth``.
        root: a test set folder; the head is rescaled so that its first images' scores spread
            (:func:`~detbench.perf.originals.calibrate_head`).
        seed: seeds the initialisation.
        arch: ``ViT-L-14`` (the original's) or ``RN50``.

    Returns:
        The files and ``backbone=open_clip:ARCH@FILE#tag=openai``, ``head=FILE``, ``pad=black``.
    """
    import open_clip
    import torch

    torch.manual_seed(seed)
    clip = open_clip.create_model(arch, pretrained=None, force_quick_gelu=True)
    clip_path, head_path = folder / f"{arch}.pt", folder / "fc_weights.pth"
    state = {k: v.half() if v.is_floating_point() else v for k, v in clip.state_dict().items()}
    torch.save(state, clip_path)
    del clip
    model = _clip_model(state, arch).eval()
    dataset = _RealFakeDataset(root)
    calibrate_head(model, model.fc, torch.stack([dataset[i][0] for i in range(min(8, len(dataset)))]))
    torch.save(model.fc.state_dict(), head_path)
    return Checkpoint({"clip": clip_path, "head": head_path},
                      [f"backbone=open_clip:{arch}@{clip_path}#tag=openai", f"head={head_path}",
                       "pad=black"])  # validate.py pads with CenterCrop's black


def load(files: dict[str, Path]) -> Any:
    """``validate.py``: ``get_model(arch)`` then ``model.fc.load_state_dict(torch.load(ckpt))``.

    Args:
        files: ``clip``: the CLIP state dict (its architecture is read from it, as ``build_model`` does);
            ``head``: the ``fc`` weights.

    Returns:
        The model in evaluation mode.
    """
    import torch

    state = torch.load(files["clip"], map_location="cpu")
    arch = "RN50" if "visual.layer1.0.conv1.weight" in state else "ViT-L-14"
    model = _clip_model(state, arch)
    model.fc.load_state_dict(torch.load(files["head"], map_location="cpu"))
    return model.eval()


def score(model: Any, root: Path) -> dict[str, float]:
    """``validate``: the ``RealFakeDataset`` loader over ``root`` and the sigmoid of every logit.

    Args:
        model: from :func:`load`.
        root: the test set folder (``0_real``, ``1_fake``).

    Returns:
        P(fake) per image path relative to ``root``.
    """
    import torch

    dataset = _RealFakeDataset(root)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=False, num_workers=WORKERS)
    y_pred: list[float] = []
    with torch.no_grad():
        for img, _label in loader:
            y_pred.extend(model(img).sigmoid().flatten().tolist())
    return {Path(p).relative_to(root).as_posix(): s for p, s in zip(dataset.total_list, y_pred, strict=True)}
