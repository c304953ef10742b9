"""Detectors that are one network scoring whole images (CNNSpot, NPR, AIDE): released checkpoints or training.

:class:`ClassifierDetector` holds what these detectors share: ``--set weights=PATH[#sha256=HEX]`` (loaded
weights-only and strictly, its sha256 recorded and part of the run identity; with weights nothing trains and
no training rows are needed), the resolved precision, evaluation through :func:`detbench.kit.scoring.score_logits`
(images of different sizes are never stacked), training through :func:`detbench.kit.training.train_classifier`, and
the saved state. A subclass supplies the architecture, the evaluation preprocessing (which may follow the
suite's test-set convention, ``RunContext.eval_convention``) and the training recipe. A network with a large
frozen part (AIDE's semantic trunk) names the module that training changes and a fit saves with
:meth:`ClassifierDetector.state_module`.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from detbench.kit.detector import Detector, RunContext
from detbench.models.precision import resolve_precision
from detbench.probabilities import finite_rows, sigmoid

if TYPE_CHECKING:
    from detbench.kit.cost import CostForward
    from detbench.models.weights import LoadedCheckpoint

STATE_FILE = "model.safetensors"
INIT_STREAM = 0x1A17  # the default seed stream of the network's initialisation: derive_seed(run seed, stream)
RELEASED_FILE = "released.json"


@dataclass(frozen=True)
class EvalPreprocessing:
    """How evaluation images become tensors: the transform, whether sizes may differ, and the facts recorded."""

    transform: Any  # picklable PIL image -> normalised tensor [3, H, W]
    by_shape: bool  # images keep different sizes (native resolution): batches split by shape
    facts: dict[str, Any] = field(default_factory=dict)  # part of the run identity


class ClassifierDetector(Detector):
    """Base class: subclasses set ``weights_what``/``weights_fix`` and implement :meth:`build_network`,
    :meth:`eval_preprocessing` and :meth:`train_setup` (and may override :meth:`prepare_training`).

    The config needs ``weights`` (str), ``precision`` (str), ``batch_size`` (int, evaluation) and
    ``sigmoid_dtype`` (``float32``, the originals' ``model(x).sigmoid()``, or ``float64``; read by the default
    :meth:`probabilities`).
    """

    weights_what: ClassVar[str] = "the checkpoint"
    weights_fix: ClassVar[str] = "pass --set weights=/path/to/checkpoint.pth"
    init_stream: ClassVar[int] = INIT_STREAM  # the network is built under torch seeded by derive_seed(seed, this)
    file_keys: ClassVar[dict[str, tuple[str, ...]]] = {"weights": ()}  # named by its sha256 in the identity
    follows_eval_profiles = True  # --set suite.eval_profile=... replaces eval_preprocessing() for its test sets

    def needs_training(self) -> bool:
        """Whether :meth:`fit` trains: only when no ``weights`` file is given.

        Returns:
            True without ``--set weights=``.
        """
        return not self.config.weights

    # ---- what subclasses provide

    @abstractmethod
    def build_network(self) -> Any:
        """The architecture with the original's parameter names, initialised as the original initialises it.

        Called under a seeded RNG (the run seed's ``INIT_STREAM``).

        Returns:
            The network (a ``torch.nn.Module``).
        """

    @abstractmethod
    def eval_preprocessing(self, ctx: RunContext) -> EvalPreprocessing:
        """The evaluation transform for this run (``ctx.eval_convention`` may choose it).

        Args:
            ctx: the run context.

        Returns:
            The :class:`EvalPreprocessing` used for generators without a suite-imposed profile.
        """

    @abstractmethod
    def train_setup(self, ctx: RunContext, train: pd.DataFrame) -> Any:
        """A :class:`detbench.kit.training.TrainSetup` for ``self.net`` (called by :meth:`fit` when training).

        Args:
            ctx: the run context.
            train: the training rows (a recipe may depend on their number, e.g. a batch capped at it).

        Returns:
            The recipe; its ``model`` is :meth:`state_module` (or ``self.net``).
        """

    def prepare_training(self, ctx: RunContext) -> dict[str, Any]:
        """Load what training starts from (e.g. ImageNet weights) before any data work.

        Called by :meth:`setup` when no ``weights`` are given; may replace ``self.net``.

        Args:
            ctx: the run context.

        Returns:
            Facts that enter the identity and the fit facts (default: none).
        """
        return {}

    def released_state_dict(self, state_dict: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        """The released checkpoint's tensors that :meth:`setup` loads strictly (default: all of them).

        A subclass whose original saves tensors its forward never reads (a text tower beside the image tower) drops
        exactly those here, by name, and says so in a warning.

        Args:
            state_dict: the unwrapped checkpoint.
            ctx: the run context (for warnings).

        Returns:
            The tensors to load.
        """
        return state_dict

    def to_tensor(self) -> Any:
        """PIL image -> normalised network input, after any resizing/cropping (default: ImageNet statistics).

        Returns:
            A picklable transform.
        """
        from detbench.data.preprocess import imagenet_tensor

        return imagenet_tensor()

    def profile_preprocessing(self, profile: Any) -> EvalPreprocessing:
        """A suite-imposed :class:`~detbench.data.preprocess.EvalProfile`: its resize/crop steps, then
        :meth:`to_tensor`.

        Args:
            profile: the profile (from ``ctx.eval_profile_for``).

        Returns:
            The :class:`EvalPreprocessing` (by shape when the profile keeps native sizes).
        """
        from torchvision import transforms

        return EvalPreprocessing(transforms.Compose([_ApplyProfile(profile), self.to_tensor()]),
                                 by_shape=profile.native_size, facts={"eval_profile": profile.name})

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """P(fake) from the network's logits (one logit: its sigmoid, in the config's ``sigmoid_dtype``).

        Args:
            logits: the logits of the images scored, one row per image.

        Returns:
            P(fake) per image.
        """
        return sigmoid(logits, self.config.sigmoid_dtype)

    def state_module(self) -> Any:
        """The module whose state dict a fit saves and loads (strictly): by default the whole network. A network
        with a large frozen part returns a module registering only the parts training changes.

        Returns:
            The :class:`torch.nn.Module` to save and load.
        """
        return self.net

    # ---- the Detector contract

    def setup(self, ctx: RunContext) -> None:
        """Build the network under the seeded RNG, load the released ``weights`` (strictly) or prepare training.

        Args:
            ctx: the run context (device and seed).

        Raises:
            WeightsError: the weights file is missing, unreadable, unsafe or does not fit the architecture.
        """
        import torch

        from detbench.kit.seeded_data import derive_seed
        from detbench.models.weights import LoadedCheckpoint, load_checkpoint_file, load_into

        self.precision = resolve_precision(self.config.precision, ctx.device)
        self.released: LoadedCheckpoint | None = None
        self.training_facts: dict[str, Any] = {}
        loaded = None
        if self.config.weights:  # read (and checked) before any network is built: a bad file fails at once
            loaded = load_checkpoint_file(self.config.weights, what=self.weights_what, fix=self.weights_fix)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(ctx.seed, self.init_stream))
            self.net = self.build_network()
            if loaded is None:
                self.training_facts = self.prepare_training(ctx)  # may replace self.net (e.g. ImageNet weights)
        if loaded is not None:
            load_into(self.net, self.released_state_dict(loaded.state_dict, ctx), f"{self.weights_what} {loaded.path}")
            self.released = LoadedCheckpoint({}, loaded.path, loaded.sha256)  # the tensors now live in the net
        self.net.eval()
        self.preprocessing = self.eval_preprocessing(ctx)
        self.device = "cpu"

    def identity(self) -> dict[str, Any]:
        """What enters the run identity beyond the config.

        Returns:
            The resolved precision, the evaluation preprocessing facts, the released weights' sha256 (when given)
            and the training facts of :meth:`prepare_training` but their ``*_path`` ones (a file is named by its
            sha256, never by its path: those are recorded with the fit only).
        """
        weights = {"weights_sha256": self.released.sha256} if self.released is not None else {}
        facts = {k: v for k, v in self.training_facts.items() if not k.endswith("_path")}
        return {"precision": self.precision, "eval_preprocessing": self.preprocessing.facts, **weights, **facts}

    def _to(self, device: str) -> None:
        if device != self.device:
            self.net.to(device)
            self.device = device

    def fit(self, train: pd.DataFrame, heldout: pd.DataFrame, ctx: RunContext) -> dict[str, Any]:
        """Train with :meth:`train_setup`'s recipe, or nothing when released weights were loaded.

        Args:
            train: the training rows.
            heldout: the held-out rows for model selection.
            ctx: the run context.

        Returns:
            Facts for the run record: ``weights`` (released or trained), ``trained``, the checkpoint or training
            facts, and the evaluation preprocessing.
        """
        if self.released is not None:
            return {"weights": "released", "trained": False, **self.released.facts(),
                    "eval_preprocessing": self.preprocessing.facts}
        from detbench.kit.training import train_classifier

        self._to(ctx.device)
        facts = train_classifier(self.train_setup(ctx, train), train, heldout, ctx)
        self.net.eval()
        return {"weights": "trained", "trained": True, **self.training_facts, **facts,
                "eval_preprocessing": self.preprocessing.facts}

    def predict(self, rows: pd.DataFrame, ctx: RunContext) -> tuple[np.ndarray, dict[int, str]]:
        """P(fake) per row; each generator's images preprocessed by the suite's profile for it, or by our own.

        Args:
            rows: the rows to score.
            ctx: the run context (device, batch size, perturbation, evaluation profiles).

        Returns:
            Scores (NaN where an image could not be used) and failure reasons by row position.
        """
        from detbench.kit.scoring import score_logits

        self._to(ctx.device)
        self.net.eval()
        groups: dict[Any, list[int]] = {}  # the suite's profile for a generator's test set, or None (our own)
        for pos, generator in enumerate(rows["generator"]):
            groups.setdefault(ctx.eval_profile_for(generator), []).append(pos)
        scores = np.full(len(rows), np.nan)
        failures: dict[int, str] = {}
        for profile, positions in groups.items():
            pp = self.preprocessing if profile is None else self.profile_preprocessing(profile)
            logits, failed = score_logits(
                self.net, rows.iloc[positions], ctx, pp.transform, device=ctx.device, precision=self.precision,
                batch_size=ctx.batch_size or self.config.batch_size, perturb=ctx.perturbation,
                by_shape=pp.by_shape, description=f"score {self.name} ({ctx.stage})")
            failures.update({positions[i]: reason for i, reason in failed.items()})
            ok = finite_rows(logits)
            if ok.any():
                scores[np.asarray(positions)[ok]] = self.probabilities(logits[ok])
        return scores, failures

    def cost_forward(self, ctx: RunContext, generator: str) -> CostForward:
        """The network on one image preprocessed as :meth:`predict` preprocesses ``generator``'s images.

        Args:
            ctx: the evaluation's run context (its profile for ``generator``, if any).
            generator: the generator of the image counted.

        Returns:
            The network's forward; trainable: its parameters that require grad (those training updates).
        """
        from detbench.kit.cost import CostForward

        profile = ctx.eval_profile_for(generator)
        pp = self.preprocessing if profile is None else self.profile_preprocessing(profile)
        trainable = sum(p.numel() for p in self.net.parameters() if p.requires_grad)
        return CostForward(self.net, pp.transform, (self.net,), trainable=trainable, native_size=pp.by_shape)

    def save(self, directory: Path) -> None:
        """Write the trained weights (safetensors), or for released weights only which file was used (JSON).

        Args:
            directory: the state folder (created if missing).
        """
        directory.mkdir(parents=True, exist_ok=True)
        if self.released is not None:  # the file itself is the state: record which one, not a copy
            (directory / RELEASED_FILE).write_text(json.dumps(self.released.facts(), indent=1, sort_keys=True))
            return
        from safetensors.torch import save_file

        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_module().state_dict().items()}
        save_file(state, str(directory / STATE_FILE))

    def load(self, directory: Path) -> None:
        """Restore the state written by :meth:`save`.

        Args:
            directory: the state folder.

        Raises:
            WeightsError: the released weights changed since the fit, or the saved state does not fit the network.
        """
        from detbench.models.weights import WeightsError, load_into, load_state_dict_safely

        if self.released is not None:
            saved = json.loads((directory / RELEASED_FILE).read_text())
            if saved["sha256"] != self.released.sha256:
                raise WeightsError(f"{self.released.path} changed since this fit was made (sha256 "
                                   f"{saved['sha256']} then, {self.released.sha256} now)")
            return
        load_into(self.state_module(), load_state_dict_safely(directory / STATE_FILE), f"{self.name} state {directory}")


@dataclass(frozen=True)
class _ApplyProfile:
    """A picklable transform step: an EvalProfile's resize/crop steps."""

    profile: Any

    def __call__(self, img: Any) -> Any:
        return self.profile.apply(img)
