"""A reference ResNet written from its published semantics, for the equivalence tests of CNNSpot and NPR.

Nothing here imports detbench or torchvision models: the state dicts are built key by key in the originals'
layout (``conv1``, ``bn1``, ``layer<i>.<j>.conv1..3/bn1..3``, ``layer<i>.0.downsample.{0,1}``, then the head),
with random weights and random BatchNorm statistics, and the forward pass is plain functional torch
(bottleneck v1.5: the stride sits on the 3x3 convolution; BatchNorm in evaluation mode, eps 1e-5).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor
from torch.nn import functional as F

RESNET50_LAYERS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)  # bottleneck widths per stage; outputs are 4x


def _conv(gen: torch.Generator, out_ch: int, in_ch: int, k: int) -> Tensor:
    fan_in = in_ch * k * k
    return torch.randn(out_ch, in_ch, k, k, generator=gen) * (2.0 / fan_in) ** 0.5


def _bn(sd: OrderedDict, prefix: str, ch: int, gen: torch.Generator, gain: float = 1.0) -> None:
    sd[f"{prefix}.weight"] = gain * (0.5 + torch.rand(ch, generator=gen))
    sd[f"{prefix}.bias"] = 0.1 * torch.randn(ch, generator=gen)
    sd[f"{prefix}.running_mean"] = 0.1 * torch.randn(ch, generator=gen)
    sd[f"{prefix}.running_var"] = 0.5 + torch.rand(ch, generator=gen)
    sd[f"{prefix}.num_batches_tracked"] = torch.tensor(1000 + int(torch.randint(0, 100, (1,), generator=gen)))


def random_resnet_state(*, stem_kernel: int, stages: int, layers: tuple[int, ...] = RESNET50_LAYERS,
                        head: str, head_scale: float, seed: int) -> OrderedDict[str, Tensor]:
    """Random weights of a ResNet-50-style network cut after ``stages`` stages, with a 1-logit ``head``."""
    gen = torch.Generator().manual_seed(seed)
    sd: OrderedDict[str, Tensor] = OrderedDict()
    sd["conv1.weight"] = _conv(gen, 64, 3, stem_kernel)
    _bn(sd, "bn1", 64, gen)
    inplanes = 64
    for stage in range(stages):
        width = WIDTHS[stage]
        for block in range(layers[stage]):
            p = f"layer{stage + 1}.{block}"
            sd[f"{p}.conv1.weight"] = _conv(gen, width, inplanes, 1)
            _bn(sd, f"{p}.bn1", width, gen)
            sd[f"{p}.conv2.weight"] = _conv(gen, width, width, 3)
            _bn(sd, f"{p}.bn2", width, gen)
            sd[f"{p}.conv3.weight"] = _conv(gen, width * 4, width, 1)
            _bn(sd, f"{p}.bn3", width * 4, gen, gain=0.2)  # small residual branches, as trained ResNets have
            if block == 0:
                sd[f"{p}.downsample.0.weight"] = _conv(gen, width * 4, inplanes, 1)
                _bn(sd, f"{p}.downsample.1", width * 4, gen)
            inplanes = width * 4
    sd[f"{head}.weight"] = head_scale * torch.randn(1, inplanes, generator=gen) / inplanes**0.5
    sd[f"{head}.bias"] = 0.1 * torch.randn(1, generator=gen)
    return sd


def _batch_norm(x: Tensor, sd: dict[str, Tensor], prefix: str) -> Tensor:
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"], sd[f"{prefix}.weight"],
                        sd[f"{prefix}.bias"], training=False, eps=1e-5)


def _bottleneck(x: Tensor, sd: dict[str, Tensor], p: str, stride: int) -> Tensor:
    out = F.relu(_batch_norm(F.conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
    out = F.relu(_batch_norm(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1), sd, f"{p}.bn2"))
    out = _batch_norm(F.conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
    if f"{p}.downsample.0.weight" in sd:
        x = _batch_norm(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), sd, f"{p}.downsample.1")
    return F.relu(out + x)


def resnet_features(x: Tensor, sd: dict[str, Tensor], *, stem_kernel: int, stages: int,
                    layers: tuple[int, ...] = RESNET50_LAYERS) -> Tensor:
    """Pooled features ``[B, C]``: stem conv (stride 2, 'same' padding) - BN - ReLU - maxpool 3/2/1 - stages
    (stride 1, then 2 on each stage's first block) - global average pool."""
    x = F.conv2d(x, sd["conv1.weight"], stride=2, padding=stem_kernel // 2)
    x = F.max_pool2d(F.relu(_batch_norm(x, sd, "bn1")), kernel_size=3, stride=2, padding=1)
    for stage in range(stages):
        for block in range(layers[stage]):
            x = _bottleneck(x, sd, f"layer{stage + 1}.{block}", stride=2 if stage > 0 and block == 0 else 1)
    return x.mean(dim=(2, 3))


def head_logits(features: Tensor, sd: dict[str, Tensor], head: str) -> Tensor:
    """The linear head: ``[B, C]`` -> ``[B]``."""
    return (features @ sd[f"{head}.weight"].T + sd[f"{head}.bias"])[:, 0]


def calibrate_head(sd: dict[str, Tensor], features: Tensor, head: str) -> None:
    """Rescale the random head (its direction stays random) so that the logits of ``features`` spread around 0
    with standard deviation 2: random deep networks map every input to nearly the same saturated logit, which
    would make a score comparison meaningless."""
    z = features @ sd[f"{head}.weight"][0]
    scale = 2.0 / float(z.std())
    sd[f"{head}.weight"] = sd[f"{head}.weight"] * scale
    sd[f"{head}.bias"] = torch.tensor([-float(z.mean()) * scale])


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_normalised_tensor(pixels) -> Tensor:
    """uint8 ``[H, W, 3]`` -> float ``[3, H, W]``: /255 then (x - mean) / std per channel (ToTensor, Normalize)."""
    x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std
