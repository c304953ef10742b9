"""NPR's evaluation loop (chuangchuangtan/NPR-DeepfakeDetection): ``test.py`` (the model and weights, the
ForenSynths-style test sets) and ``validate.py`` ``validate`` with ``data/datasets.py`` ``binary_dataset``,
re-derived from their semantics.

- Model: ``networks/resnet.py`` ``resnet50(num_classes=1)``: a 3x3 stride-2 ``conv1``, ``layer1``, ``layer2``,
  average pool and ``fc1 = Linear(512, 1)``; the forward takes ``NPR = x - up(down(x))`` (nearest, by 2, with
  ``recompute_scale_factor``) and feeds ``NPR * 2/3`` to ``conv1``. Weights ``torch.load(path)`` (a flat state
  dict) loaded strictly; ``model.eval()``, float32.
- Data: ``torchvision.datasets.ImageFolder`` (PIL open + ``convert('RGB')``), transforms ``Resize((256, 256))``
  (``no_resize`` False: the sets have mixed sizes), no crop (``no_crop`` True), ``ToTensor``, ImageNet
  ``Normalize``; ``data_augment`` is commented out in this repository.
- Loader: ``batch_size`` 64 and ``num_threads`` 8 workers (``options/base_options.py``), no shuffling.
- Loop: under ``torch.no_grad()``, ``model(img).sigmoid().flatten().tolist()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detbench.perf.originals import Checkpoint, calibrate_head, image_folder_sigmoid

SOURCE = "chuangchuangtan/NPR-DeepfakeDetection test.py + validate.py validate"
BATCH_SIZE = 64
WORKERS = 8
LOAD_SIZE = 256


def _network() -> Any:
    import torch
    from torch import nn
    from torch.nn import functional as F
    from torchvision.models.resnet import Bottleneck, ResNet

    class NPRResNet(ResNet):
        """``networks/resnet.py`` ``ResNet`` cut after ``layer2``, its stem and head as the original's."""

        def __init__(self) -> None:
            super().__init__(Bottleneck, [3, 4, 6, 3], num_classes=1)
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
            del self.layer3, self.layer4, self.fc
            self.fc1 = nn.Linear(512, 1)

        @staticmethod
        def interpolate(img: torch.Tensor, factor: float) -> torch.Tensor:
            down = F.interpolate(img, scale_factor=factor, mode="nearest", recompute_scale_factor=True)
            return F.interpolate(down, scale_factor=1 / factor, mode="nearest", recompute_scale_factor=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            npr = x - self.interpolate(x, 0.5)
            x = self.maxpool(self.relu(self.bn1(self.conv1(npr * 2.0 / 3.0))))
            x = self.avgpool(self.layer2(self.layer1(x)))
            return self.fc1(x.view(x.size(0), -1))

    return NPRResNet()


def write_checkpoint(folder: Path, root: Path, seed: int = 0) -> Checkpoint:
    """Seeded random weights as ``networks/base_model.py`` ``save_networks`` writes them (the flat state dict).

    Args:
        folder: where to write ``NPR.pth``.
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
    calibrate_head(model, model.fc1, torch.stack([dataset[i][0] for i in range(min(8, len(dataset)))]))
    path = folder / "NPR.pth"
    torch.save(model.state_dict(), path)
    return Checkpoint({"weights": path}, [f"weights={path}"])


def load(files: dict[str, Path]) -> Any:
    """``test.py``: build ``resnet50(num_classes=1)`` and load the flat state dict strictly.

    Args:
        files: ``weights``: the checkpoint.

    Returns:
        The model in evaluation mode.
    """
    import torch

    model = _network()
    model.load_state_dict(torch.load(files["weights"], map_location="cpu"), strict=True)
    return model.eval()


def _transform() -> Any:
    import torchvision.transforms as T

    return T.Compose([T.Resize((LOAD_SIZE, LOAD_SIZE)), T.ToTensor(),
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
