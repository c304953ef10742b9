"""Offline-first weight resolution, sha256 verification and safe checkpoint loading.

Resolution order: explicit local file → ``$DETBENCH_HOME/weights/<dir>/`` → Hugging Face cache → download
(only when online). Checkpoints load through safetensors or ``torch.load(weights_only=True)``: a pickle
carrying code is refused. The one class beyond torch's weights-only set that a checkpoint may hold is
``argparse.Namespace`` (:data:`CHECKPOINT_CLASSES`): the training arguments that MAE/ConvNeXt-style training
scripts save beside the weights (``{'model', 'optimizer', 'epoch', 'scaler', 'args'}``, e.g. AIDE's releases).
The one library class a checkpoint may name is yacs' ``CfgNode`` (:data:`INERT_CONFIGS`), the run's config that
Swin/MFM-style training scripts save beside the weights (SPAI's release): it is read as a plain ``OrderedDict`` of
its items by a stand-in, so yacs is neither imported nor needed and none of its code runs.
Loading is strict: keys, shapes, and floating point wherever the model holds it (:func:`check_state_dict`).

A file's sha256 is computed at least once in every process that records it (never read from an on-disk cache), and
a pinned file (``PATH#sha256=HEX``) is hashed anew each time it is checked.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from detbench.errors import WeightsError
from detbench.paths import home_subdir
from detbench.store import sha256_of_file

if TYPE_CHECKING:
    from torch import Tensor

OFFLINE_ENV = ("DETBENCH_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")
_TRUE = {"1", "true", "yes", "on"}
_HUB_NAME = re.compile(r"^[A-Za-z0-9_.]+-([0-9a-f]{8,64})\.(?:pth|pt|bin|safetensors)$")
_saved_offline: dict[str, str | None] | None = None
# Classes a weights-only checkpoint may construct beyond torch's own: this one exactly (its subclasses are refused);
# its fields are plain values, and its state never reaches a network.
CHECKPOINT_CLASSES = (argparse.Namespace,)


class _InertConfig:
    """Stands in for a config class a checkpoint names: what the unpickler builds is a plain ``OrderedDict``.

    torch's weights-only unpickler sets items only on plain dicts (an allow-listed ``dict`` subclass such as yacs'
    ``CfgNode`` is refused even so) and sets its attributes (yacs' flags) in the ``__dict__`` an ``OrderedDict``
    has; nested nodes become nested ``OrderedDict``s and every value inside still passes the weights-only checks.
    """

    def __new__(cls, *args: object) -> OrderedDict[Any, Any]:
        return OrderedDict()


# Config classes a checkpoint may name, by their pickled global name: each is read by the inert stand-in above, so
# the library is never imported. yacs' CfgNode is what SPAI's utils.save_checkpoint pickles under 'config'.
INERT_CONFIGS = ("yacs.config.CfgNode",)


def _allowed_globals() -> list[Any]:
    """What ``torch.load(weights_only=True)`` may build beyond its own set: the classes and the stand-ins."""
    return [*CHECKPOINT_CLASSES, *((_InertConfig, name) for name in INERT_CONFIGS)]


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file found on disk or downloaded: its path, sha256 and where it came from."""

    path: Path
    sha256: str
    origin: str  # "file", "detbench-home", "hf-cache" or "download"


def weights_dir() -> Path:
    """``$DETBENCH_HOME/weights``: drop-in location for weights that cannot be downloaded.

    Returns:
        The folder (created on demand).
    """
    return home_subdir("weights")


# ---------------------------------------------------------------------------------------------- offline


def set_offline(offline: bool) -> None:
    """Forbid (True) or restore (False) network access for huggingface_hub, open_clip and timm.

    Call before huggingface_hub is imported; if it already is, its constants are patched too.

    Args:
        offline: True sets the offline environment variables; False only undoes what an earlier
            ``set_offline(True)`` changed.
    """
    global _saved_offline
    if offline:
        if _saved_offline is None:
            _saved_offline = {k: os.environ.get(k) for k in OFFLINE_ENV}
        for key in OFFLINE_ENV:
            os.environ[key] = "1"
    elif _saved_offline is not None:
        for key, value in _saved_offline.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _saved_offline = None
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = _env_offline()


def _env_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in OFFLINE_ENV)


def is_offline() -> bool:
    """Whether network access is off.

    Returns:
        True when DETBENCH_OFFLINE, HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set (or the hub says so).
    """
    constants = sys.modules.get("huggingface_hub.constants")
    return _env_offline() or bool(constants is not None and constants.HF_HUB_OFFLINE)


def _can_reach(url: str, timeout: float = 3.0) -> bool:
    """A quick TCP probe so an unreachable hub fails at once instead of after minutes of retries."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # the proxy decides; let the client try
    parsed = urlparse(url)
    if not parsed.hostname:
        return True
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- sha256


# Digests computed in this process, keyed by the file's identity on disk. Nothing is cached across processes: a file
# edited in place with its size and mtime restored would pass for the old one. The key holds the inode and the
# change time as well, which a write always moves and no tool sets back.
_digests: dict[tuple[str, int, int, int, int, int], str] = {}


def sha256_file(path: str | os.PathLike[str], *, fresh: bool = False) -> str:
    """Streamed sha256 of a file, computed at least once per process (never read from an on-disk cache).

    Args:
        path: the file.
        fresh: hash the file even when this process hashed it before (a ``#sha256=`` pin always does).

    Returns:
        The hex digest.
    """
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if not fresh and key in _digests:
        return _digests[key]
    digest = sha256_of_file(path)
    _digests[key] = digest
    return digest


def verify_sha256(path: str | os.PathLike[str], expected: str | None) -> str:
    """The file's sha256, checked against ``expected``.

    Args:
        path: the file.
        expected: the expected hex digest, or a prefix of at least 8 characters (torch hub file-name
            convention); None checks nothing.

    Returns:
        The full hex digest (hashed anew whenever ``expected`` is given).

    Raises:
        WeightsError: the digest differs (the message shows both).
    """
    actual = sha256_file(path, fresh=expected is not None)
    if expected is not None:
        exp = expected.strip().lower()
        if len(exp) < 8 or not actual.startswith(exp):
            raise WeightsError(
                f"sha256 mismatch for {path}:\n  expected {exp}\n  actual   {actual}\n"
                "The file is corrupt, truncated, or not the checkpoint you meant; replace it.")
    return actual


def _hf_blob_sha256(path: Path) -> str | None:
    """Hugging Face caches LFS files as ``blobs/<sha256>``: the expected hash comes for free."""
    target = path.resolve()
    name = target.name
    if target.parent.name == "blobs" and len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return name
    return None


def hub_filename_sha256(path: str | os.PathLike[str]) -> str | None:
    """The sha256 prefix that torch hub / torchvision file names carry (``resnet50-19c8e357.pth`` → ``19c8e357``).

    Args:
        path: the file path.

    Returns:
        The prefix, or None when the name has none.
    """
    match = _HUB_NAME.match(Path(path).name)
    return match.group(1) if match else None


# ---------------------------------------------------------------------------------------------- resolve


def resolve_weights(
    what: str,
    *,
    fix: str,
    local: str | os.PathLike[str] | None = None,
    home_dir: str | None = None,
    home_patterns: Sequence[str] = WEIGHT_PATTERNS,
    hf_repo: str | None = None,
    hf_filenames: Sequence[str] = (),
    download: Callable[[], str] | None = None,
    download_url: str | None = None,
    expected_sha256: str | None = None,
) -> ResolvedWeights:
    """Find a checkpoint offline-first and verify its sha256.

    Searched in order: ``local`` (no fallback when given), ``$DETBENCH_HOME/weights/<home_dir>``, the Hugging Face
    cache, then ``download``.

    Args:
        what: names the weights in messages.
        fix: says how a user supplies them (appended to every error).
        local: an explicit file.
        home_dir: a folder under ``$DETBENCH_HOME/weights`` searched for ``home_patterns``.
        home_patterns: glob patterns tried in order (the first sorted match wins).
        hf_repo: a Hugging Face repo whose cached ``hf_filenames`` are looked up (no network).
        hf_filenames: the file names in ``hf_repo``.
        download: returns the path of a downloaded file; run only when online.
        download_url: probed first; when unreachable, fail at once instead of after retries.
        expected_sha256: the expected hex digest (or prefix); a Hugging Face blob's name is used when None.

    Returns:
        The path, its sha256 and its origin (``file``, ``detbench-home``, ``hf-cache`` or ``download``).

    Raises:
        WeightsError: not found (the message lists where it looked), offline, unreachable, a failed download,
            or a sha256 mismatch.
    """
    looked: list[str] = []
    found: tuple[Path, str] | None = None
    if local is not None:
        path = Path(local).expanduser().resolve()
        if not path.is_file():
            hint = ("\n(only a trailing #sha256=HEX, or #tag=TAG in a backbone spec, is read as an option; any other "
                    "# is part of the path)") if "#" in str(local) else ""
            raise WeightsError(f"{what}: file not found: {path}{hint}\n{fix}")
        found = (path, "file")
    if found is None and home_dir is not None:
        folder = weights_dir() / home_dir
        looked.append(f"{folder}/ ({', '.join(home_patterns)})")
        for pattern in home_patterns:
            matches = sorted(p for p in folder.glob(pattern) if p.is_file())
            if matches:
                found = (matches[0], "detbench-home")
                break
    if found is None and hf_repo:
        from huggingface_hub import try_to_load_from_cache

        looked.append(f"Hugging Face cache: {hf_repo} ({', '.join(hf_filenames)})")
        for filename in hf_filenames:
            cached = try_to_load_from_cache(hf_repo, filename)
            if isinstance(cached, str):
                found = (Path(cached), "hf-cache")
                break
    if found is None:
        where = "".join(f"\n  - {x}" for x in looked)
        if download is None:
            raise WeightsError(f"{what}: not found. Looked in:{where}\n{fix}")
        if is_offline():
            raise WeightsError(f"{what}: not found and offline mode is on. Looked in:{where}\n{fix}")
        if download_url and not _can_reach(download_url):
            raise WeightsError(
                f"{what}: not found and {download_url} cannot be reached. Looked in:{where}\n{fix}")
        try:
            found = (Path(download()), "download")
        except Exception as e:  # any download failure means the same thing to the user
            raise WeightsError(
                f"{what}: download failed ({type(e).__name__}: {e}). Looked in:{where}\n{fix}") from e
    path, origin = found
    expected = expected_sha256 or (_hf_blob_sha256(path) if origin in ("hf-cache", "download") else None)
    return ResolvedWeights(path=path, sha256=verify_sha256(path, expected), origin=origin)


# ---------------------------------------------------------------------------------------------- load


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def _is_safetensors(path: Path) -> bool:
    """By content, not suffix: Hugging Face cache blobs have no suffix (a snapshot's symlink resolves to one)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def load_state_dict_safely(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A flat ``{name: tensor}`` state dict from .safetensors or a weights-only torch checkpoint.

    Pickles that would construct arbitrary objects (code) and TorchScript archives are refused; the one class
    allowed beyond torch's weights-only set is ``argparse.Namespace`` (:data:`CHECKPOINT_CLASSES`), and a yacs
    ``CfgNode`` (:data:`INERT_CONFIGS`) is read as a plain ``OrderedDict`` without yacs.
    ``{'state_dict': …}`` / ``{'model': …}`` / ``{'state_net': …}`` wrappers are unwrapped and ``module.`` prefixes
    stripped.

    Args:
        path: the checkpoint.

    Returns:
        The state dict on the CPU.

    Raises:
        WeightsError: the file is missing, unreadable, unsafe, TorchScript, or holds no tensors.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors" or _is_safetensors(path):
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path), device="cpu")
        except Exception as e:
            raise WeightsError(f"{path} is not a readable safetensors file: {e}") from e
    else:
        if _is_torchscript(path):
            raise WeightsError(
                f"{path} is a TorchScript archive (e.g. OpenAI's original CLIP .pt); detbench does not load "
                "executable checkpoints. Use the open_clip weights (open_clip_pytorch_model.bin or "
                ".safetensors from the model's Hugging Face repo) instead.")
        try:
            with torch.serialization.safe_globals(_allowed_globals()):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise WeightsError(
                f"{path} is not a safe checkpoint: it holds Python objects beyond tensors (a pickle is "
                f"code), so it was refused{_refused_global(str(e))}. Convert it to .safetensors in a trusted "
                "environment.") from None
        except Exception as e:
            raise WeightsError(f"{path} is not a readable checkpoint: {type(e).__name__}: {e}") from e
    top = obj
    while isinstance(obj, dict):
        inner = next((obj[k] for k in WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors: {_describe(top)}. "
                           f"{_wrapper_advice(top)}")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


# the checkpoint wrappers unwrapped: {'state_dict': {...}}, {'model': {...}} and {'state_net': {...}}
WRAPPERS = ("state_dict", "model", "state_net")


def _refused_global(message: str) -> str:
    """What torch's weights-only unpickler refused, without its advice to load the file unsafely."""
    match = re.search(r"GLOBAL ([\w.]+)", message)
    return f" (it would call or build {match.group(1)})" if match else ""


def _kind(value: object) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return "a tensor"
    if isinstance(value, dict):
        tensors = sum(isinstance(v, torch.Tensor) for v in value.values())
        return f"a dict of {len(value)} entries, {tensors} of them tensors"
    return type(value).__name__


def _describe(obj: object) -> str:
    """The top level of a checkpoint in words: its keys and what each holds (at most 12)."""
    if not isinstance(obj, dict):
        return f"it holds a {type(obj).__name__}"
    if not obj:
        return "it holds an empty dict"
    items = list(obj.items())
    shown = ", ".join(f"{k!s} ({_kind(v)})" for k, v in items[:12])
    more = f", ... ({len(items) - 12} more)" if len(items) > 12 else ""
    return f"its top level holds {shown}{more}"


def _wrapper_advice(obj: object) -> str:
    """Which wrappers are accepted, and the key to re-save when one entry holds the tensors."""
    import torch

    accepted = " or ".join(f"{{'{k}': state_dict}}" for k in WRAPPERS)
    advice = (f"detbench reads a flat {{name: tensor}} state dict, or one wrapped as {accepted} (e.g. with "
              "'optimizer', 'epoch' and 'args' beside it); other wrappers are not guessed at")
    if isinstance(obj, dict):
        inner = [k for k, v in obj.items()
                 if isinstance(v, dict) and v and all(isinstance(t, torch.Tensor) for t in v.values())]
        if len(inner) == 1:
            advice += (f". If '{inner[0]}' holds the weights, save it on its own in a trusted environment: "
                       f"torch.save(checkpoint['{inner[0]}'], 'weights.pth')")
    return advice


def not_floating(expected: dict[str, Tensor], got: dict[str, Tensor]) -> list[str]:
    """The keys where the model holds floating point and the checkpoint does not (integer, bool or complex).

    A float of another width (fp16, bf16, fp64) loads as the model's float: it is not listed.

    Args:
        expected: the model's tensors (or any tensor of the right kind, e.g. a float head's).
        got: the checkpoint's tensors.

    Returns:
        ``"key: checkpoint DTYPE vs model DTYPE"`` per such key, in the model's order.
    """
    return [f"{k}: checkpoint {str(got[k].dtype).removeprefix('torch.')} vs model "
            f"{str(expected[k].dtype).removeprefix('torch.')}"
            for k in expected if k in got and expected[k].is_floating_point() and not got[k].is_floating_point()]


def _listing(label: str, items: list[str]) -> str:
    if not items:
        return ""
    more = f", … ({len(items) - 8} more)" if len(items) > 8 else ""
    return f"\n  {len(items)} {label}: {', '.join(items[:8])}{more}"


def check_floating(tensors: dict[str, Tensor], what: str) -> None:
    """Refuse integer, bool and complex tensors where floating point weights belong (a head, a layer).

    Args:
        tensors: the checkpoint's tensors that must be floating point.
        what: names the checkpoint in the message.

    Raises:
        WeightsError: naming every such key and its dtype.
    """
    bad = [f"{k}: {str(v.dtype).removeprefix('torch.')}" for k, v in tensors.items() if not v.is_floating_point()]
    if bad:
        raise WeightsError(f"{what} holds tensors that are not floating point where weights must be (an integer, "
                           f"bool or complex checkpoint would run as a different model):"
                           f"{_listing('tensors of the wrong dtype', bad)}")


def check_state_dict(expected: dict[str, Tensor], got: dict[str, Tensor], what: str) -> None:
    """Check a state dict against a model's strictly: same keys, shapes and kinds of dtype.

    Where the model holds floating point the checkpoint must too: integer, bool and complex tensors are refused
    (``load_state_dict`` would cast them silently into a different model); fp16/bf16/fp64 load as the model's float.

    Args:
        expected: the model's state dict.
        got: the checkpoint's state dict.
        what: names the checkpoint in the message.

    Raises:
        WeightsError: listing missing, unexpected, shape-mismatched and wrong-dtype keys.
    """
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in got and got[k].shape != expected[k].shape]
    dtypes = not_floating(expected, got)
    if not (missing or unexpected or shapes or dtypes):
        return
    raise WeightsError(
        f"{what} does not match the architecture (strict loading; a partly random model is never used):"
        f"{_listing('missing keys', missing)}{_listing('unexpected keys', unexpected)}"
        f"{_listing('shape mismatches', shapes)}"
        f"{_listing('tensors not floating point where the model holds floating point', dtypes)}")


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint loaded from a user-given file: its tensors, where it came from and its sha256."""

    state_dict: dict[str, Tensor]
    path: Path
    sha256: str

    def facts(self) -> dict[str, str]:
        """What a run records about the file.

        Returns:
            ``{"path", "sha256"}``.
        """
        return {"path": str(self.path), "sha256": self.sha256}


def load_checkpoint_file(spec: str, *, what: str, fix: str, key: str = "weights",
                         hub_name_check: bool = False) -> LoadedCheckpoint:
    """Load a checkpoint named by ``--set KEY=PATH[#sha256=HEX]``: weights-only, sha256 verified and recorded.

    Args:
        spec: the file path, optionally pinned with a trailing ``#sha256=<64 hex>`` (a mismatch fails showing
            both; a pinned file is always hashed anew). Any other ``#`` is part of the path.
        what: the weights in words, for messages (``"the CNNSpot checkpoint"``).
        fix: how the user supplies the file (named in the error when it is missing).
        key: the config key the spec came from (for messages about a malformed pin).
        hub_name_check: also check the sha256 prefix that torch hub file names carry
            (``resnet50-19c8e357.pth``) when no pin is given.

    Returns:
        The unwrapped state dict (``{'model': ...}`` / ``{'state_dict': ...}`` wrappers and ``module.``
        prefixes removed) with the file's path and sha256.
    """
    from detbench.models.spec import split_sha256  # the one parser of #sha256= pins

    try:
        path, pin = split_sha256(spec)
    except ValueError as exc:
        raise WeightsError(f"--set {key}: {exc}") from None
    expected = pin or (hub_filename_sha256(path) if hub_name_check else None)
    resolved = resolve_weights(what, fix=fix, local=path, expected_sha256=expected)
    return LoadedCheckpoint(load_state_dict_safely(resolved.path), resolved.path, resolved.sha256)


def load_into(model: Any, state_dict: dict[str, Tensor], what: str) -> None:
    """Copy ``state_dict`` into ``model`` strictly: every key and shape must match.

    BatchNorm ``num_batches_tracked`` counters may be absent, as in checkpoints older than PyTorch 0.4.1
    (torchvision's ``resnet50-19c8e357.pth``); PyTorch itself accepts those files strictly, and the counter
    never changes an evaluation-mode forward pass.

    Args:
        model: the ``torch.nn.Module``.
        state_dict: the checkpoint's tensors.
        what: names the checkpoint in the message.

    Raises:
        WeightsError: a missing, unexpected or mis-shaped key.
    """
    expected = model.state_dict()
    tolerated = {k for k in expected if k.endswith(".num_batches_tracked") and k not in state_dict}
    check_state_dict({k: v for k, v in expected.items() if k not in tolerated}, state_dict, what)
    model.load_state_dict(state_dict, strict=not tolerated)
