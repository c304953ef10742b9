"""CNNDetection's evaluation loop (PeterWang512/CNNDetection): ``eval.py`` (the model and weights) and
``validate.py`` ``validate`` with ``data/__init__.py`` ``create_dataloader`` and ``data/datasets.py``
``binary_dataset`` (the data), re-derived from their semantics.

- Model: ``networks/resnet.py`` ``resnet50(num_classes=1)`` (torchvision's ResNet-50), weights
  ``torch.load(path, map_location='cpu')['model']`` loaded strictly; ``model.eval()``, float32.
- Data: ``torchvision.datasets.ImageFolder`` over the test set (``0_real``, ``1_fake``; PIL open + ``convert('RGB')``
  per image), transforms: no resize (``eval.py`` sets ``no_resize``), ``data_augment`` (a numpy round trip:
  ``np.array(img)`` then ``Image.fromarray``; blur and JPEG have probability 0 at test time),
  ``CenterCrop(224)`` (``no_crop`` is off by default), no flip, ``ToTensor``, ImageNet ``Normalize``.
- Loader: ``batch_size`` 64 and ``num_threads`` 4 workers (``options/base_options.py`` defaults), no shuffling.
- Loop: under ``torch.no_grad()``, ``model(img).sigmoid().flatten().tolist()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detbench.perf.originals import Checkpoint, calibrate_head, image_folder_sigmoid

SOURCE = "PeterWang512/CNNDetection eval.py + validate.py validate"
BATCH_SIZE = 64
WORKERS = 4
CROP = 224


def _network() -> Any:
    from torchvision.models import resnet50

    return resnet50(num_classes=1)


def write_checkpoint(folder: Path, root: Path, seed: int = 0) -> Checkpoint:
    """Seeded random ResNet-50 weights as ``networks/base_model.py`` ``save_networks`` writes them
    (``{'model': state_dict, 'total_steps': ...}``).

    Args:
        folder: where to write ``blur_jpg_prob0.5.pth``.
        root: a test set folder; the head is rescaled so that its first images' scores spread
            (:func:`~detbench.perf.originals.calibrate_head`).
        seed: seeds the initialisation.

    Returns:
        The file and ``weights=FILE``.
    """
    import torch
    import torchvision.datasets as datasets

    torch.manual_seed(seed)
    model = _network().eval()
    dataset = datasets.ImageFolder(str(root), _transform())
    calibrate_head(model, model.fc, torch.stack([dataset[i][0] for i in range(min(8, len(dataset)))]))
    path = folder / "blur_jpg_prob0.5.pth"
    torch.save({"model": model.state_dict(), "total_steps": 0}, path)
    return Checkpoint({"weights": path}, [f"weights={path}"])


def load(files: dict[str, Path]) -> Any:
    """``eval.py``: build ``resnet50(num_classes=1)`` and load ``state_dict['model']`` strictly.

    Args:
        files: ``weights``: the checkpoint.

    Returns:
        The model in evaluation mode.
    """
    import torch

    model = _network()
    model.load_state_dict(torch.load(files["weights"], map_location="cpu")["model"])
    return model.eval()


def _augment(img: Any) -> Any:
    """``data_augment`` at test time: blur and JPEG never fire, the numpy round trip remains."""
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.array(img))


def _transform() -> Any:
    import torchvision.transforms as T

    return T.Compose([T.Lambda(_augment), T.CenterCrop(CROP), T.ToTensor(),
                      T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])


def score(model: Any, root: Path) -> dict[str, float]:
    """``validate``: the ImageFolder loader over ``root`` and the sigmoid of every logit.

    Args:
        model: from :func:`load`.
        root: the test set folder (``0_real``, ``1_fake``).

    Returns:
        P(fake) per image path relative to ``root``.
    """
    return image_folder_sigmoid(model, root, _transform(), BATCH_SIZE, WORKERS)
