"""Learning-rate schedules of the shared training loop (:mod:`detbench.kit.training`), and what happens after an epoch.

A :class:`Schedule` gives the learning rate of every optimizer step and decides after each epoch, from the
held-out metrics, whether that epoch's state is the one to keep and whether training stops. Each schedule is an
original's recipe: CNNDetection's early stopping, NPR's step decay, the MAE/ConvNeXt half cosine that AIDE uses.
Its state is JSON-ready, so a checkpoint carries it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EpochOutcome:
    """A schedule's decision after an epoch's held-out evaluation."""

    keep: bool  # this epoch's state becomes the kept one (the "best" checkpoint the original would write)
    stop: bool  # training ends here
    note: str = ""


class Schedule(ABC):
    """Learning rate per step, and what happens after each epoch. Its state must survive a checkpoint."""

    @abstractmethod
    def lr(self, step: int, epoch: int, steps_per_epoch: int) -> float:
        """The learning rate of one optimizer step.

        Args:
            step: the global step, 0-based, counted over the whole training.
            epoch: the epoch it lies in, 0-based.
            steps_per_epoch: optimizer steps per epoch.

        Returns:
            The learning rate to set before the step.
        """

    @abstractmethod
    def end_epoch(self, epoch: int, heldout: dict[str, float]) -> EpochOutcome:
        """Decide after an epoch from its held-out metrics; may change the rate of the following steps.

        Args:
            epoch: the epoch just finished, 0-based.
            heldout: held-out metrics by name (``acc``, ``ap`` ...); NaN when there are no held-out rows.

        Returns:
            Whether to keep this epoch's state and whether to stop, with a note for the log.
        """

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state for checkpoints.

        Returns:
            A copy of the schedule's attributes (settings and progress alike).
        """
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state saved by :meth:`state_dict` (a resumed training continues the schedule).

        Args:
            state: the saved attributes; they overwrite the current ones.
        """
        vars(self).update(state)

    def describe(self) -> dict[str, Any]:
        """The schedule's kind and settings, for the run record.

        Returns:
            ``kind`` (the class name) and the :meth:`state_dict`.
        """
        return {"kind": type(self).__name__, **self.state_dict()}


class PlateauSchedule(Schedule):
    """CNNDetection's early stopping (``train.py``, ``earlystop.py``): after each epoch, held-out ``metric``
    below ``best + delta`` counts as no improvement; ``patience`` of those in a row divide the learning rate by
    ``factor`` and start a fresh stopper with ``delta_after``; training stops once the rate would fall below
    ``min_lr``. An epoch keeps its state when the current stopper saves it, as ``model_epoch_best.pth`` is
    saved: the first epoch after every drop is kept whatever its score (the original's fresh stopper saves
    its first call), so the final state is the best of the last learning-rate phase, not of the whole run.
    Without held-out scores (NaN) every epoch is kept and the rate never drops.
    """

    def __init__(self, lr: float, *, patience: int, delta: float, delta_after: float, factor: float = 10.0,
                 min_lr: float = 1e-6, metric: str = "acc") -> None:
        self.current_lr, self.patience, self.delta, self.delta_after = lr, patience, delta, delta_after
        self.factor, self.min_lr, self.metric = factor, min_lr, metric
        self.best: float | None = None
        self.counter = 0
        self.drops = 0

    def lr(self, step: int, epoch: int, steps_per_epoch: int) -> float:
        """The current rate: constant between drops.

        Args:
            step: unused.
            epoch: unused.
            steps_per_epoch: unused.

        Returns:
            The rate after the drops so far.
        """
        return self.current_lr

    def end_epoch(self, epoch: int, heldout: dict[str, float]) -> EpochOutcome:
        """Count the epoch as an improvement or not, and drop the rate or stop after ``patience`` without one.

        Args:
            epoch: the epoch just finished (unused: only the sequence of scores matters).
            heldout: held-out metrics; ``metric`` NaN or absent: kept, nothing counted.

        Returns:
            keep when the stopper saves this epoch; stop when the rate would fall below ``min_lr``.
        """
        score = heldout.get(self.metric, float("nan"))
        if score is None or not math.isfinite(score):
            return EpochOutcome(keep=True, stop=False, note="no held-out score: kept")
        delta = self.delta if self.drops == 0 else self.delta_after
        if self.best is None or score >= self.best + delta:
            self.best, self.counter = float(score), 0
            return EpochOutcome(keep=True, stop=False)
        self.counter += 1
        if self.counter < self.patience:
            return EpochOutcome(keep=False, stop=False)
        new_lr = self.current_lr / self.factor
        if new_lr < self.min_lr:
            return EpochOutcome(keep=False, stop=True, note=f"learning rate {new_lr:g} below {self.min_lr:g}")
        self.current_lr, self.best, self.counter, self.drops = new_lr, None, 0, self.drops + 1
        return EpochOutcome(keep=False, stop=False, note=f"learning rate divided by {self.factor:g}: {new_lr:g}")


class StepDecaySchedule(Schedule):
    """NPR's schedule (``train.py``): after epoch ``e`` (0-based) with ``e % every == 0 and e != 0`` the rate is
    multiplied by ``factor``; no early stopping; every epoch is kept, so the last one is the result.
    """

    def __init__(self, lr: float, *, every: int, factor: float) -> None:
        self.current_lr, self.every, self.factor = lr, every, factor

    def lr(self, step: int, epoch: int, steps_per_epoch: int) -> float:
        """The current rate: constant within an epoch.

        Args:
            step: unused.
            epoch: unused.
            steps_per_epoch: unused.

        Returns:
            The rate after the decays so far.
        """
        return self.current_lr

    def end_epoch(self, epoch: int, heldout: dict[str, float]) -> EpochOutcome:
        """Decay the rate after every ``every``-th epoch (never after epoch 0; ``every`` 0: never).

        Args:
            epoch: the epoch just finished, 0-based.
            heldout: unused (NPR selects nothing on held-out data).

        Returns:
            Always keep, never stop.
        """
        if self.every and epoch % self.every == 0 and epoch != 0:
            self.current_lr *= self.factor
            return EpochOutcome(keep=True, stop=False, note=f"learning rate x{self.factor:g}: {self.current_lr:g}")
        return EpochOutcome(keep=True, stop=False)


class CosineSchedule(Schedule):
    """Per-step half-cosine from ``lr`` down to ``min_lr`` over ``epochs`` after a linear warm-up of
    ``warmup_epochs`` (the MAE/ConvNeXt ``adjust_learning_rate`` that AIDE uses: the epoch is fractional,
    ``step / steps_per_epoch``). An epoch is kept when held-out ``metric`` beats the best so far strictly.
    """

    def __init__(self, lr: float, *, epochs: int, min_lr: float = 0.0, warmup_epochs: float = 0.0,
                 metric: str = "acc") -> None:
        self.base_lr, self.epochs, self.min_lr, self.warmup_epochs = lr, epochs, min_lr, warmup_epochs
        self.metric = metric
        self.best: float | None = None

    def lr(self, step: int, epoch: int, steps_per_epoch: int) -> float:
        """The rate at fractional epoch ``step / steps_per_epoch``: linear warm-up from 0, then the half cosine.

        Args:
            step: the global step, 0-based.
            epoch: unused (the fractional epoch comes from ``step``).
            steps_per_epoch: optimizer steps per epoch.

        Returns:
            The learning rate; ``min_lr`` at fractional epoch ``epochs``.
        """
        t = step / max(1, steps_per_epoch)
        if t < self.warmup_epochs:
            return self.base_lr * t / self.warmup_epochs
        span = max(1e-12, self.epochs - self.warmup_epochs)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * (t - self.warmup_epochs)
                                                                                   / span))

    def end_epoch(self, epoch: int, heldout: dict[str, float]) -> EpochOutcome:
        """Keep the epoch when held-out ``metric`` beats the best so far (strictly); never stop early.

        Args:
            epoch: the epoch just finished (unused).
            heldout: held-out metrics; ``metric`` NaN or absent: kept.

        Returns:
            keep as above; stop never.
        """
        score = heldout.get(self.metric, float("nan"))
        if score is None or not math.isfinite(score):
            return EpochOutcome(keep=True, stop=False, note="no held-out score: kept")
        if self.best is None or score > self.best:
            self.best = float(score)
            return EpochOutcome(keep=True, stop=False)
        return EpochOutcome(keep=False, stop=False)
