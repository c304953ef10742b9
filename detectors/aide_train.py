"""AIDE's training recipe (``scripts/train.sh``, ``main_finetune.py``, ``data/datasets.py``) for the shared loop.

Recipe: AdamW (weight decay 0, eps 1e-8), learning rate ``blr * batch / 256`` following a per-step half cosine down
to ``min_lr`` (no warm-up; :class:`~detbench.kit.schedules.CosineSchedule` is ``utils.adjust_learning_rate`` called
with the fractional epoch ``data_iter_step / len(data_loader) + epoch``), cross-entropy with label smoothing 0.1 on
the two logits, training batches without the last incomplete one (``drop_last``), and after every epoch the
accuracy on held-out images; the epoch with the best accuracy so far (strictly) is kept, as ``checkpoint-best.pth``
is. Each training image is augmented before the patch choice with kornia, as the original: ``RandomGaussianBlur``
(3x3 kernel, sigma in [0.1, 3], p=0.1) then ``RandomJPEG`` (quality in [30, 100], p=0.1), on the [0, 1] tensor.
What trains: the two ResNets and the MLP head (``convnext_proj`` too with ``train_proj``); the SRM bank and the
semantic trunk stay frozen. The original's ``model.train()`` also switches the frozen trunk to training mode, so its
stochastic depth (0.1 in open_clip's ConvNeXt-XXL config) is active while training (``semantic_train_mode``);
BatchNorm layers of a stand-in trunk keep their statistics.

The loop is :func:`detbench.kit.training.train_classifier` (seeded per epoch, image and step; resumable after a kill
from checkpoints written every ``checkpoint_every`` steps and at every epoch end, holding only the parts training
changes: :class:`TrainableAIDE`). The held-out images are the training generators' separate ``val`` split
(``train.holdout=val-split``; every training image trains), as the original validates on its ``--eval_data_path``
(``dataset/progan/eval`` beside ``dataset/progan/train`` in its README). Departures: where the suite has no val split
apart from its evaluation data (GenImage, whose ``val`` is the test set; the demo), 10 % of the training split is
held out instead (recorded in ``run.json`` ``holdout``); a training set smaller than one batch trains as one batch
of all its images (the original's ``drop_last`` loader would train nothing); under torchrun each process takes a
slice of every batch and DistributedDataParallel averages the gradients, as the original's 8 GPUs do.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from detbench.kit.schedules import CosineSchedule
from detbench.kit.seeded_data import TorchDrawn
from detbench.kit.training import TrainableParts, TrainSetup, cross_entropy
from detbench.probabilities import softmax_fake


class TrainAugment:
    """PIL image -> the AIDE stack of an augmented image: ToTensor, kornia blur then JPEG (each with its own
    probability), then ``stack`` (the patch choice and resizing of evaluation). Draws from torch's global RNG,
    which the loop seeds per image.
    """

    def __init__(self, stack: Any, blur_prob: float, jpeg_prob: float) -> None:
        import kornia.augmentation as K

        self.stack = stack
        self.perturb = K.container.ImageSequential(
            K.RandomGaussianBlur(kernel_size=(3, 3), sigma=(0.1, 3.0), p=blur_prob),
            K.RandomJPEG(jpeg_quality=(30, 100), p=jpeg_prob))

    def __call__(self, img: Any) -> Tensor:
        """The stack of the augmented image."""
        x = self.stack.to_tensor(img)
        with torch.no_grad():
            x = self.perturb(x.unsqueeze(0))[0]
        return self.stack.from_tensor(x)


class TrainableAIDE(TrainableParts):
    """The parts of an :class:`~detbench.detectors.aide_net.AIDENet` that training changes, under the original's
    key names (``hpf``, ``model_min``, ``model_max``, ``fc``, ``convnext_proj``): their state dict is what training
    checkpoints and a fit hold. The frozen semantic trunk is held outside the module tree (never copied into a
    checkpoint; its weights are recorded by the backbone's identity), and ``train()`` sets its mode as the
    original does (``semantic_train_mode``), BatchNorm statistics of a stand-in trunk staying frozen.
    """

    def __init__(self, net: nn.Module, semantic_train_mode: bool) -> None:
        super().__init__(net)
        self.hpf, self.model_min, self.model_max = net.hpf, net.model_min, net.model_max
        self.fc, self.convnext_proj = net.fc, net.convnext_proj
        self.semantic_train_mode = semantic_train_mode

    def train(self, mode: bool = True) -> TrainableAIDE:
        """Set the training mode of the trained parts and of the frozen trunk.

        Args:
            mode: True for training; the trunk follows it only with ``semantic_train_mode`` (its stochastic depth
                then active), and its BatchNorm layers always stay in eval mode.

        Returns:
            ``self``.
        """
        nn.Module.train(self, mode)  # the trained parts only: the rest of the network is set below
        trunk = self.net.openclip_convnext_xxl
        trunk.train(mode and self.semantic_train_mode)
        for module in trunk.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()  # a stand-in's statistics stay as loaded: the trunk is frozen
        return self


def training_recipe(view: TrainableAIDE, config: Any, n_rows: int, stack: Any, precision: str) -> TrainSetup:
    """AIDE's recipe as a :class:`~detbench.kit.training.TrainSetup` for
    :func:`~detbench.kit.training.train_classifier`.

    Args:
        view: the trainable view of the network (already on the training device).
        config: the AIDE config (epochs, train_batch_size, blr, min_lr, weight_decay, smoothing, blur_prob,
            jpeg_prob, checkpoint_every, batch_size for held-out scoring).
        n_rows: how many training rows there are (a batch never holds more).
        stack: the evaluation and held-out transform (:class:`~detbench.detectors.aide_patches.AIDETransform`).
        precision: the resolved precision of the forward pass (the original trains in fp32).

    Returns:
        The recipe: batch ``min(train_batch_size, n_rows)`` and learning rate ``blr * batch / 256``.
    """
    batch = min(config.train_batch_size, n_rows)
    lr = config.blr * batch / 256
    params = [p for p in view.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay, eps=1e-8, foreach=True)
    return TrainSetup(
        model=view, optimizer=optimizer, schedule=CosineSchedule(lr, epochs=config.epochs, min_lr=config.min_lr),
        train_transform=TorchDrawn(TrainAugment(stack, config.blur_prob, config.jpeg_prob)), heldout_transform=stack,
        loss=partial(cross_entropy, smoothing=config.smoothing),
        probabilities=partial(softmax_fake, dtype=config.softmax_dtype), epochs=config.epochs,
        batch_size=batch, keep="best", drop_last=True, checkpoint_every=config.checkpoint_every,
        checkpoint_each_epoch=True, heldout_batch_size=config.batch_size, precision=precision, name="aide")
