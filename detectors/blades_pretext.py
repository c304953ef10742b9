"""BLADES' bi-level pretext training (``SSL_training.py``, ``BLO.py``, ``loss.py``, ``utils.py``,
``dataset/SSL_training_dataset.py`` of MZMMSEC/AIGFD_BLO) for :mod:`detbench.detectors.blades`
(``--set extractor=pretext``).

**The pretext tasks** (eleven losses, in the code's order ``iso, av, et, fl, makes, mm, em, wb, ep, face_coarse,
face_grained``) are scored by ``CLIP_EXIF_Net``: ``exp(logit_scale)`` times the cosine of the image feature (the
ResNet-50 whose ``fc`` gives 768 values, the extractor detection uses) with ``text_fc`` (``Linear(1024, 768)``) of
CLIP RN50's text-tower feature of each of the code's 50 prompts (``collect_separate_texts_v2``: the same strings in
the same order, CLIP's BPE tokens, context 77; the CLIP of ``pretext_text``, ``open_clip:RN50@openai`` as the code's
``clip.load("RN50")``, whose ``logit_scale`` is used and trained, ``fixed_scale`` off as in the code). The text tower
trains with the image tower unless ``pretext_freeze_text`` (the code's ``--freezeText``, off by default); the trained
text side is saved with the extractor under ``CLIP_EXIF_Net``'s names. The prompt columns are sliced per task:

- four ordinal EXIF tags (ISO, aperture, exposure time, focal length), three levels each (``low, medium, high``):
  learning to rank (``L2R_Loss``): the expected level ``sum_k k softmax_k`` of each image; over every pair ``i < j``
  of the batch, ``p = Phi(2 (e_i - e_j))`` (the code's ``0.5 (1 + erf(d / (sqrt(2) / 2)))``) against
  ``g = (sign(y_i - y_j) + 1) / 2`` (0.5 for a tie), the fidelity loss ``1 - sqrt(p g + 1e-8) - sqrt((1 - p)(1 - g)
  + 1e-8)``, averaged;
- five categorical EXIF tags (make 10 classes, metering mode 8, exposure mode 7, white balance 2, exposure program
  6; the code's class tables): the focal fidelity loss (``categorical_focal_loss_fidelity``): ``(1 - p_y)^2 (1 -
  sum_k sqrt(p_k [k = y] + 1e-8))`` of the softmax, averaged (every other class adds ``sqrt(1e-8)`` to the sum, as
  in the code);
- the face head: coarse (``photographic`` / ``manipulated``, the fidelity loss of the softmax,
  ``Fidelity_Loss_multi`` with classes) and fine-grained (``mouth``, ``eye``: which region was manipulated, the
  fidelity loss of each sigmoid, ``Fidelity_Loss_multi`` multi-label).

**The weighting and the bi-level loop** (``BL_Optimizer``): the inner loss is ``sum_i lambda_i L_i``,
``lambda`` starting at ``pretext_weight_exif`` for the nine EXIF losses and ``pretext_weight_face`` for the two face
losses. Each step, before the inner update, the weights move on the proxy task (``pretext_primary``, the code's
``--task``; the README's run: ``face_coarse``, coarse detection of manipulated faces) by one Adam step
(``pretext_meta_lr``) on the code's hypergradient, a DARTS-style finite difference:

1. the virtual step ``theta' = theta - alpha (grad_theta sum_i lambda_i L_i(theta) + wd theta)`` on the training batch
   (``alpha`` the current learning rate, ``wd`` AdamW's weight decay; AdamW has no momentum buffer, so none enters);
2. ``d = grad_theta' L_primary(theta')`` on a second batch (the code's validation loader is the training loader
   drawn again);
3. ``eps = 0.01 / ||d||``; ``h_i = (L_i(theta + eps d) - L_i(theta - eps d)) / (2 eps)`` on the training batch;
4. ``grad lambda = -alpha h`` (the direct term is zero: the proxy loss does not depend on ``lambda``).

Then one AdamW step (``pretext_lr``, weight decay ``pretext_weight_decay``) on every parameter with the updated
weights; ``CosineAnnealingLR(T_max=pretext_cosine_tmax)`` steps once per epoch. Every forward runs in training mode,
as the code's (its copy ``model_`` is never put in evaluation mode): BatchNorm uses the batch's statistics, and the
running statistics move on each forward of ``theta`` (the virtual step's, ``theta + eps d``'s, ``theta - eps d``'s
and the update's), never on that of ``theta'`` (the code's copy holds its own). In float32, as the code's.

**Data** (``selectiveEXIF_data``): each real face carries four manipulated copies; an item is the real face with
probability 1/2 and each copy with 1/8 (``random.choice([0, 0, 0, 0, 1, 2, 3, 4])``), labelled ``(manipulated,
mouth, eye)`` = ``(0, 0, 0)``, ``(1, 1, 0)`` (copies 0 and 1: the mouth flipped vertically and horizontally),
``(1, 0, 1)`` (copy 2: the eyes flipped) and ``(1, 1, 1)`` (copy 3: the whole face distorted); each item the
evaluation transform (``ToTensor``, ``Resize((size, size))`` of the tensor, CLIP's mean/std).

**What differs from the code** (each said in the README): the code reads its labels from a JSON it does not publish;
here the EXIF labels come from the tags the index recorded (``exif_tags``, shared with SDAIE's pretext training:
:mod:`detbench.kit.exif_pretext`): the ordinal levels are the tertiles of the used faces' values (edges recorded);
categorical values map to the code's class names through EXIF 2.3's codes (:data:`CODES`; makes by the brand the
``Make`` starts with), and a face whose value no class holds is left out (counted). SDAIE's tables differ: its
classes are the most frequent values found, BLADES' are the code's fixed names. The fine-grained head has two regions
(mouth, eye): the code's prompts list three (all 50 prompts are encoded as the code's) but its labels two, which
cannot be scored together, so the third prompt's column (``nose``) is dropped from the logits (each prompt's
feature is computed alone: the other columns are the code's). The suite's images are face crops: no bounding-box
crop. A batch with fewer than two faces (the code's ranking loss would be NaN) is skipped.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from detbench.errors import DataError, InputError
from detbench.kit.detector import RunContext
from detbench.kit.exif_pretext import most_missing, read_tags, tag_coverage

# ---------------------------------------------------------------------------------------------- the code's tables

ESP = 1e-8  # loss.py's ``esp`` inside every square root
FOCAL_GAMMA = 2.0  # categorical_focal_loss_fidelity's gamma
LEVELS = (1.0, 2.0, 3.0)  # L2R_Loss's expected level weights (num_exif_scale 3: low, medium, high)
# (task, indexed EXIF tag) of the ordinal heads, in the code's order; their levels are tertiles (see level_edges)
ORDINAL = (("iso", "ISOSpeedRatings"), ("av", "FNumber"), ("et", "ExposureTime"), ("fl", "FocalLength"))
MAKES = ("Nikon", "Apple", "FUJIFILM", "Canon", "Samsung", "Sony", "Panasonic", "Nokia", "Pentax", "others")
METERING = ("average", "centerweighted", "others", "partial", "spot", "multi-spot", "multi-segment", "evaluative")
EXPOSURE_MODE = ("auto", "auto-bracketing", "program", "manual", "aperture-priority", "easy-shooting",
                 "shutter-priority")
WHITE_BALANCE = ("auto", "manual")
EXPOSURE_PROGRAM = ("landscape mode", "manual control", "normal program", "portrait mode", "shutter priority",
                    "aperture priority")
# The EXIF codes the index records -> the code's class names (EXIF 2.3). A code without a class (exposure program 0
# "not defined", 5 "creative", 6 "action") leaves the image out; "evaluative", "program" and "easy-shooting" are
# maker names no EXIF code gives, so those classes never occur
CODES: dict[str, dict[int, str]] = {
    "MeteringMode": {0: "others", 1: "average", 2: "centerweighted", 3: "spot", 4: "multi-spot", 5: "multi-segment",
                     6: "partial", 255: "others"},
    "ExposureMode": {0: "auto", 1: "manual", 2: "auto-bracketing"},
    "WhiteBalance": {0: "auto", 1: "manual"},
    "ExposureProgram": {1: "manual control", 2: "normal program", 3: "aperture priority", 4: "shutter priority",
                        7: "portrait mode", 8: "landscape mode"},
}
# (task, indexed EXIF tag, the code's classes) of the categorical heads, in the code's order
CATEGORICAL = (("makes", "Make", MAKES), ("mm", "MeteringMode", METERING), ("em", "ExposureMode", EXPOSURE_MODE),
               ("wb", "WhiteBalance", WHITE_BALANCE), ("ep", "ExposureProgram", EXPOSURE_PROGRAM))
FACE_COARSE = ("photographic", "manipulated")
FACE_PARTS = ("mouth", "eye")  # the fine-grained labels (the code's third prompt, "nose", has no label: see README)
PROMPT_PARTS = (*FACE_PARTS, "nose")  # the code's fine-grained prompts; the last one's column is not scored
LEVEL_WORDS = ("low", "medium", "high")  # collect_separate_texts_v2's exif_scale (num_exif_scale 3)
TASKS = tuple(t for t, _ in ORDINAL) + tuple(t for t, _, _ in CATEGORICAL) + ("face_coarse", "face_grained")
WIDTHS = (len(LEVELS),) * len(ORDINAL) + tuple(len(c) for _, _, c in CATEGORICAL) + (len(FACE_COARSE),
                                                                                      len(FACE_PARTS))
PROMPTS = sum(WIDTHS)  # 49 prompt columns
# The items of a real face: 0 the face, 1..4 its manipulated copies <stem>_0..3.png; drawn as the code's
# random.choice([0, 0, 0, 0, 1, 2, 3, 4]); each with its (manipulated, mouth, eye) labels
DRAW = (0, 0, 0, 0, 1, 2, 3, 4)
FACE_LABELS = ((0, 0, 0), (1, 1, 0), (1, 1, 0), (1, 0, 1), (1, 1, 1))
COPIES = 4
STREAM = 0xB1ADE5  # seed stream of the draws: derive_seed(run seed, STREAM, ...)


def make_class(value: str) -> str:
    """The code's make class of an EXIF ``Make``: the brand it starts with (case ignored), else ``others``.

    Args:
        value: the tag's text (``NIKON CORPORATION``, ``Canon``...).

    Returns:
        One of :data:`MAKES`.
    """
    low = value.strip().lower()
    return next((m for m in MAKES[:-1] if low.startswith(m.lower())), "others")


def class_name(tag: str, value: Any) -> str | None:
    """The code's class of a categorical tag's recorded value, or None when its table has none.

    Args:
        tag: the EXIF tag (``Make``, ``MeteringMode``...).
        value: the value the index recorded.

    Returns:
        The class name, or None.
    """
    if tag == "Make":
        return make_class(str(value))
    try:
        return CODES[tag].get(int(float(value)))
    except (TypeError, ValueError):
        return None


def level_edges(values: np.ndarray) -> tuple[float, float]:
    """The tertiles of a tag's values: level 1 up to the first, 2 up to the second, 3 above."""
    low, high = np.quantile(values, [1 / 3, 2 / 3])
    return float(low), float(high)


def pretext_targets(rows: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """The nine EXIF targets of every row whose tags the code's tables can label, and what was left out.

    Args:
        rows: the real training rows.

    Returns:
        ``(targets by task [n] int64, positions of the usable rows, facts)``; ordinal targets are levels 1..3,
        categorical ones class indices; facts: the counts, values without a class per tag, the level edges.
    """
    tags = read_tags(rows)
    coverage = tag_coverage(tags, [t for _, t in ORDINAL] + [t for _, t, _ in CATEGORICAL])
    unclassed: dict[str, int] = {}
    usable = []
    for i in coverage.usable:
        lacking = [tag for _, tag, _ in CATEGORICAL if class_name(tag, tags[i][tag]) is None]  # type: ignore[index]
        for tag in lacking:
            unclassed[tag] = unclassed.get(tag, 0) + 1
        if not lacking:
            usable.append(i)
    targets: dict[str, np.ndarray] = {}
    edges: dict[str, list[float]] = {}
    for task, tag in ORDINAL:
        values = np.asarray([float(tags[i][tag]) for i in usable])  # type: ignore[index]
        if len(values):
            low, high = level_edges(values)
            edges[tag] = [low, high]
            targets[task] = 1 + (values > low).astype(np.int64) + (values > high).astype(np.int64)
        else:
            targets[task] = np.zeros(0, dtype=np.int64)
    for task, tag, classes in CATEGORICAL:
        targets[task] = np.asarray([classes.index(class_name(tag, tags[i][tag])) for i in usable],  # type: ignore
                                   dtype=np.int64)
    facts = {**coverage.facts(), "used": len(usable), "without_class": dict(sorted(unclassed.items())),
             "level_edges": edges}
    return targets, np.asarray(usable, dtype=np.int64), facts


def code_prompts() -> list[str]:
    """``collect_separate_texts_v2(num_exif_scale=3)``: the code's 50 prompts, in its order.

    Returns:
        The texts: ISO, aperture, exposure time, focal length (three levels each), make, metering mode, exposure
        mode, white balance, exposure program, then the coarse and the fine-grained face prompts.
    """
    ordinal = ("ISO speed rating", "aperture", "exposure time", "focal length")
    texts = [f"a photo of a face with the {level} value of {what}" for what in ordinal for level in LEVEL_WORDS]
    texts += [f"a photo of a face taken with the {make} brand camera" for make in MAKES]
    texts += [f"A photo of the face captured using the {mm} metering mode" for mm in METERING]
    texts += [f"A photo of the face captured using the {em} exposure mode" for em in EXPOSURE_MODE]
    texts += [f"A photo of the face captured using the {wb} white balance mode" for wb in WHITE_BALANCE]
    texts += [f"A photo of the face captured using the exposure program set to {ep}" for ep in EXPOSURE_PROGRAM]
    texts += [f"a photo of a {face} face" for face in FACE_COARSE]
    texts += [f"a photo of a face with a manipulated {part} region" for part in PROMPT_PARTS]
    return texts


# ---------------------------------------------------------------------------------------------- losses (loss.py)


def fidelity_softmax(logits: Tensor, target: Tensor) -> Tensor:
    """``Fidelity_Loss_multi`` with classes: ``1 - sum_k sqrt(p_k [k = y] + esp)`` of the softmax, averaged."""
    p = F.softmax(logits, dim=1)
    onehot = F.one_hot(target.long(), logits.shape[1]).to(p.dtype)
    return (1 - torch.sqrt(p * onehot + ESP).sum(1)).mean()


def focal_fidelity(logits: Tensor, target: Tensor) -> Tensor:
    """``categorical_focal_loss_fidelity``: the softmax fidelity loss of each image times ``(1 - p_y)^2``."""
    p = F.softmax(logits, dim=1)
    onehot = F.one_hot(target.long(), logits.shape[1]).to(p.dtype)
    loss = 1 - torch.sqrt(p * onehot + ESP).sum(1)
    p_y = p[torch.arange(len(target)), target.long()]
    return ((1 - p_y) ** FOCAL_GAMMA * loss).mean()


def fidelity_multilabel(logits: Tensor, target: Tensor) -> Tensor:
    """``Fidelity_Loss_multi`` multi-label: ``1 - sqrt(p g + esp) - sqrt((1 - p)(1 - g) + esp)`` of each sigmoid,
    averaged over labels, then images.
    """
    p = torch.sigmoid(logits)
    g = target.to(p.dtype)
    return (1 - (torch.sqrt(p * g + ESP) + torch.sqrt((1 - p) * (1 - g) + ESP))).mean(dim=1).mean()


def rank_fidelity(logits: Tensor, level: Tensor) -> Tensor:
    """``L2R_Loss``: the fidelity loss of ``Phi(2 (e_i - e_j))`` against the pair's order, over pairs ``i < j``.

    Args:
        logits: ``[B, 3]`` the level logits.
        level: ``[B]`` the levels.

    Returns:
        The loss (NaN for fewer than two images, as the code's mean over no pair).
    """
    e = F.softmax(logits, dim=1) @ torch.tensor(LEVELS, dtype=logits.dtype, device=logits.device)
    y = level.to(logits.dtype)
    i, j = torch.triu_indices(len(e), len(e), offset=1, device=logits.device)
    g = 0.5 * (torch.sign(y[i] - y[j]) + 1)
    p = 0.5 * (1 + torch.erf((e[i] - e[j]) / (math.sqrt(2.0) * 0.5)))
    return (1 - (torch.sqrt(p * g + ESP) + torch.sqrt((1 - p) * (1 - g) + ESP))).mean()


def task_losses(logits: Tensor, targets: dict[str, Tensor]) -> list[Tensor]:
    """The eleven losses of ``BL_Optimizer.model_fit`` on the prompt logits, in :data:`TASKS` order.

    Args:
        logits: ``[B, 49]`` image-prompt logits.
        targets: per task: ordinal levels, class indices, ``face`` ``[B, 3]`` (manipulated, mouth, eye).

    Returns:
        The losses.
    """
    cols = np.cumsum((0,) + WIDTHS)
    parts = [logits[:, cols[k]:cols[k + 1]] for k in range(len(WIDTHS))]
    losses = [rank_fidelity(parts[k], targets[t]) for k, (t, _) in enumerate(ORDINAL)]
    losses += [focal_fidelity(parts[len(ORDINAL) + k], targets[t]) for k, (t, _, _) in enumerate(CATEGORICAL)]
    face = targets["face"]
    losses += [fidelity_softmax(parts[-2], face[:, 0]), fidelity_multilabel(parts[-1], face[:, 1:])]
    return losses


# ---------------------------------------------------------------------------------------------- network


TEXT_TOWER = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")


class PromptScorer(nn.Module):
    """``CLIP_EXIF_Net.forward``'s image logits: ``exp(logit_scale)`` times the cosines of the image feature with
    ``text_fc`` of the text tower's features of the code's prompts (:func:`code_prompts`, tokenised with CLIP's BPE,
    context 77). ``visual`` is the detector's extractor, ``clip`` the loaded CLIP (``visual`` None: its text tower
    and ``logit_scale``), both trained in place; the column of the prompt no label scores (``nose``) is dropped.
    """

    def __init__(self, visual: nn.Module, clip: nn.Module, dim: int, *, freeze_text: bool = False) -> None:
        from detbench.models.backbones import clip_tokenize

        super().__init__()
        self.visual = visual
        self.clip = clip
        self.text_fc = nn.Linear(int(clip.text_projection.shape[1]), dim)
        prompts = code_prompts()
        self.register_buffer("tokens", clip_tokenize(prompts, int(clip.positional_embedding.shape[0])),
                             persistent=False)
        self.scored = [k for k in range(len(prompts)) if k != len(prompts) - 1]  # all but "nose"
        if freeze_text:  # --freezeText: the tower's weights stay (text_fc and logit_scale still train)
            for name in TEXT_TOWER:
                part = getattr(clip, name)
                part.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> ``[B, 49]`` logits."""
        f = self.visual(x)
        t = self.text_fc(self.clip.encode_text(self.tokens))
        f = f / f.norm(dim=1, keepdim=True)
        t = t / t.norm(dim=1, keepdim=True)
        return (self.clip.logit_scale.exp() * f @ t.T)[:, self.scored]

    def text_state_dict(self) -> dict[str, Tensor]:
        """The text side under ``CLIP_EXIF_Net``'s names (``model.token_embedding.weight``, ..., ``model.text_fc.*``,
        ``model.logit_scale``), on the CPU.
        """
        state = {f"model.{k}": v for k, v in self.clip.state_dict().items()}
        state |= {f"model.text_fc.{k}": v for k, v in self.text_fc.state_dict().items()}
        return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def weighted(weights: Tensor, losses: list[Tensor]) -> Tensor:
    """``sum_i w_i L_i``."""
    return sum((w * loss for w, loss in zip(weights, losses, strict=True)), weights.new_zeros(()))


def hypergradient(net: nn.Module, weights: Tensor, train: tuple[Tensor, dict[str, Tensor]],
                  val: tuple[Tensor, dict[str, Tensor]], primary: Tensor, alpha: float,
                  weight_decay: float) -> Tensor:
    """``BL_Optimizer.unrolled_backward``'s gradient of the task weights (see the module docstring).

    Args:
        net: the network (training mode; its BatchNorm statistics move as the code's do).
        weights: ``[11]`` the task weights.
        train: the training batch and targets.
        val: the second batch and targets (the proxy task's).
        primary: ``[11]`` 1 for the proxy task(s), 0 elsewhere.
        alpha: the learning rate of the virtual step (and the factor of the result).
        weight_decay: the inner optimiser's weight decay.

    Returns:
        ``[11]`` the gradient to give the weights.
    """
    from torch.func import functional_call

    names = [n for n, p in net.named_parameters() if p.requires_grad]
    params = [p for p in net.parameters() if p.requires_grad]
    x, t = train
    w = weights.detach()
    grads = torch.autograd.grad(weighted(w, task_losses(net(x), t)), params)
    with torch.no_grad():
        virtual = {n: (p - alpha * (g + weight_decay * p)).requires_grad_(True)
                   for n, p, g in zip(names, params, grads, strict=True)}
    buffers = {n: b.clone() for n, b in net.named_buffers()}  # the code's copy: its own BatchNorm statistics
    val_losses = task_losses(functional_call(net, {**virtual, **buffers}, (val[0],)), val[1])
    proxy = weighted(primary.to(weights.dtype), val_losses)
    d = torch.autograd.grad(proxy, list(virtual.values()), allow_unused=True)
    d = [torch.zeros_like(p) if g is None else g for p, g in zip(params, d, strict=True)]
    eps = 0.01 / torch.cat([g.reshape(-1) for g in d]).norm()
    with torch.no_grad():
        for p, g in zip(params, d, strict=True):
            p += eps * g
        plus = torch.stack(task_losses(net(x), t))
        for p, g in zip(params, d, strict=True):
            p -= 2 * eps * g
        minus = torch.stack(task_losses(net(x), t))
        for p, g in zip(params, d, strict=True):
            p += eps * g
    return -alpha * (plus - minus) / (2 * eps)


# ---------------------------------------------------------------------------------------------- data


def manipulated_files(folder: Path) -> list[Path]:
    """The image files of the manipulated-faces folder (not recursive, as the code's ``face_dataaug_neg``)."""
    from detbench.data.images import IMAGE_EXTENSIONS

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


MANIPULATED_FACTS = ("manipulated_sha256", "manipulated_files")  # what names the folder in the run identity


def manipulated_identity(spec: str) -> dict[str, Any]:
    """Check the ``manipulated`` folder and name its content: every image file's name and sha256, hashed.

    Args:
        spec: the folder.

    Returns:
        ``manipulated_sha256`` (enters the run identity), ``manipulated_files`` and ``manipulated_path``.

    Raises:
        InputError: no folder, or none of its files is an image.
    """
    from detbench.models.weights import sha256_file

    folder = Path(spec).expanduser()
    fix = ("pass --set manipulated=DIR, a folder of each real training face's four manipulated copies "
           "<name>_0.png .. <name>_3.png (AIGFD_BLO's face_dataaug_neg)")
    if not folder.is_dir():
        raise InputError(f"blades extractor=pretext: manipulated={spec} is not a folder; {fix}")
    files = manipulated_files(folder)
    if not files:
        raise InputError(f"blades extractor=pretext: manipulated={spec} holds no image; {fix}")
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.name}\t{sha256_file(f)}\n".encode())
    return {"manipulated_sha256": digest.hexdigest(), "manipulated_files": len(files),
            "manipulated_path": str(folder.resolve())}


class FaceItems(torch.utils.data.Dataset):
    """Item ``i``: real face ``real[i]`` (variant 0) or its manipulated copy ``variant - 1``."""

    def __init__(self, reals: Any, copies: Any, real: np.ndarray, variant: np.ndarray) -> None:
        self.reals, self.copies, self.real, self.variant = reals, copies, real, variant

    def __len__(self) -> int:
        return len(self.real)

    def __getitem__(self, i: int) -> tuple[Tensor | None, int, str | None]:
        r, v = int(self.real[i]), int(self.variant[i])
        x, _, err = self.reals[r] if v == 0 else self.copies[COPIES * r + v - 1]
        return x, i, err


@dataclass
class PretextData:
    """The real faces usable for pretext training, their manipulated copies' names and the targets."""

    paths: list[str]  # under the suite root
    copies: list[str]  # under the manipulated folder: COPIES per face, in order
    targets: dict[str, np.ndarray]
    facts: dict[str, Any]


def pretext_data(rows: pd.DataFrame, folder: Path) -> PretextData:
    """The real training faces with labelled EXIF tags and all four manipulated copies in ``folder``.

    Args:
        rows: the real training rows (sorted).
        folder: the manipulated-faces folder.

    Returns:
        The :class:`PretextData`.

    Raises:
        DataError: fewer than two faces are usable (one line naming what is missing and the settings to fix it).
    """
    targets, usable, facts = pretext_targets(rows)
    present = {p.name for p in manipulated_files(folder)}
    stems = [Path(str(rows["path"].iloc[i])).stem for i in usable]
    with_copies = [k for k, s in enumerate(stems) if all(f"{s}_{c}.png" in present for c in range(COPIES))]
    facts["without_manipulated"] = len(usable) - len(with_copies)
    facts["used"] = len(with_copies)
    if len(with_copies) < 2:  # its ranking losses compare pairs of faces
        worst = most_missing({**facts["missing_tag"], **facts["without_class"]})
        raise DataError(
            f"blades pretext training: {len(with_copies)} of {len(rows)} real training faces are usable (it needs "
            "at least 2): "
            f"{facts['without_exif_tags']} carry no EXIF tag{'; missing or unclassed: ' + worst if worst else ''}; "
            f"of the {len(usable)} labelled, {facts['without_manipulated']} lack <name>_0..{COPIES - 1}.png in "
            f"--set manipulated={folder}. Train on face photographs with camera EXIF and their manipulated copies, or "
            "pass --set extractor=FILE (a pretext-trained CLIP_EXIF_Net)")
    keep = [int(usable[k]) for k in with_copies]
    return PretextData(
        paths=[str(rows["path"].iloc[i]) for i in keep],
        copies=[f"{stems[k]}_{c}.png" for k in with_copies for c in range(COPIES)],
        targets={task: v[with_copies] for task, v in targets.items()}, facts=facts)


def _targets(data: PretextData, real: np.ndarray, variant: np.ndarray, device: str) -> dict[str, Tensor]:
    t = {task: torch.as_tensor(v[real], device=device) for task, v in data.targets.items()}
    t["face"] = torch.as_tensor(np.asarray(FACE_LABELS)[variant], device=device)
    return t


def train_pretext(visual: nn.Module, clip: nn.Module, dim: int, rows: pd.DataFrame, ctx: RunContext, config: Any,
                  folder: Path, transform: Any) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The bi-level pretext training of ``visual`` and the text side (in place) on the real training faces and their
    copies.

    Args:
        visual: the extractor's ResNet-50 (trained in place, frozen again after).
        clip: the loaded CLIP's text tower and ``logit_scale`` (``pretext_text``; trained in place unless
            ``pretext_freeze_text``).
        dim: the image feature size.
        rows: the real training rows (index rows with ``exif_tags``), sorted.
        ctx: the run context (seed, device, workers, progress).
        config: the detector's settings (``pretext_*``).
        folder: the manipulated-faces folder.
        transform: PIL image -> input tensor.

    Returns:
        Facts for the fit record (the data counts, steps, losses, the task weights at the end) and the trained text
        side under ``CLIP_EXIF_Net``'s names (:meth:`PromptScorer.text_state_dict`).

    Raises:
        DataError: fewer than two usable faces (before anything is trained or written), or no step could run.
    """
    from detbench.data.loading import ImageRowsDataset, iterate_batches
    from detbench.kit.seeded_data import derive_seed

    c = config
    data = pretext_data(rows, folder)
    n = len(data.paths)
    if n < len(rows):
        ctx.phases.log(f"blades pretext training: {n} of {len(rows)} real training faces are used; left out: "
                       f"{data.facts['without_exif_tags']} without EXIF tags, missing per tag "
                       f"{data.facts['missing_tag']}, without a class per tag {data.facts['without_class']}, "
                       f"{data.facts['without_manipulated']} without their manipulated copies")
    torch.manual_seed(derive_seed(ctx.seed, STREAM))
    net = PromptScorer(visual, clip, dim, freeze_text=c.pretext_freeze_text).to(ctx.device)
    visual.requires_grad_(True)
    net.train()
    b = c.pretext_batch_size
    weights = torch.tensor([c.pretext_weight_exif] * (len(TASKS) - 2) + [c.pretext_weight_face] * 2,
                           device=ctx.device, requires_grad=True)
    primary = torch.tensor([1.0 if t == c.pretext_primary else 0.0 for t in TASKS], device=ctx.device)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=c.pretext_lr,
                                  weight_decay=c.pretext_weight_decay)
    meta_optimizer = torch.optim.Adam([weights], lr=c.pretext_meta_lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.pretext_cosine_tmax)
    reals = ImageRowsDataset(ctx.suite_root, data.paths, transform)
    copies = ImageRowsDataset(folder, data.copies, transform)
    per_epoch = math.ceil(n / b)
    losses: list[float] = []
    skipped = failed = 0
    with ctx.phases.phase("blades pretext training", c.pretext_epochs * per_epoch) as advance:
        for epoch in range(c.pretext_epochs):
            rng = np.random.default_rng([ctx.seed, STREAM, epoch])
            real = np.concatenate([rng.permutation(n), rng.permutation(n)])  # the loader, and drawn again
            variant = rng.choice(DRAW, size=2 * n)
            items = FaceItems(reals, copies, real, variant)
            batches = []
            for s in range(per_epoch):
                part = np.arange(s * b, min((s + 1) * b, n))
                batches.append([*part.tolist(), *(part + n).tolist()])
            for batch in iterate_batches(items, batch_size=2 * b, workers=ctx.workers, batches=batches):
                advance(1)
                ok = np.asarray(batch.indices, dtype=np.int64)
                failed += len(batch.failures)
                first = ok < n
                if batch.x is None or first.sum() < 2 or (~first).sum() < 2:  # L2R needs a pair of each
                    skipped += 1
                    continue
                x = batch.x.to(ctx.device)
                train = (x[torch.as_tensor(first)], _targets(data, real[ok[first]], variant[ok[first]], ctx.device))
                val = (x[torch.as_tensor(~first)], _targets(data, real[ok[~first]], variant[ok[~first]], ctx.device))
                lr = scheduler.get_last_lr()[0]
                meta_optimizer.zero_grad()
                weights.grad = hypergradient(net, weights, train, val, primary, lr, c.pretext_weight_decay)
                meta_optimizer.step()
                optimizer.zero_grad()
                loss = weighted(weights, task_losses(net(train[0]), train[1]))
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            scheduler.step()
    visual.requires_grad_(False)
    visual.eval()
    if not losses:
        raise DataError(f"blades pretext training: no step ran ({failed} images failed to load, {skipped} batches "
                        "had fewer than two faces); check the suite's real training faces and --set manipulated=DIR")
    facts = {**data.facts, "epochs": c.pretext_epochs, "steps": len(losses), "skipped_steps": skipped,
            "failed_images": failed, "first_loss": losses[0], "last_loss": losses[-1],
            "task_weights": dict(zip(TASKS, [round(float(w), 6) for w in weights.detach().cpu()], strict=True)),
            "logit_scale": round(float(clip.logit_scale.detach().exp()), 6)}
    return facts, net.text_state_dict()
