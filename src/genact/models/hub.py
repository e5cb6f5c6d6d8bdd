"""One way to find a pretrained model: a local directory, or a Hugging Face hub id."""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors import SafetensorError, safe_open

from genact.errors import GenactError

# Weights are only ever read from safetensors; pickled formats are not fetched.
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]


class ModelNotFoundError(GenactError, RuntimeError):
    """A model id or directory that cannot be resolved; the message says what to do."""


def resolve_model_dir(id_or_dir: str | os.PathLike) -> Path:
    """Local directory of a model given as a path or a hub id (downloaded or cached).

    With HF_HUB_OFFLINE=1 (or no network) a hub id that is not in the local cache
    raises ModelNotFoundError with one line saying how to pass a directory instead.
    """
    path = Path(id_or_dir).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path}: not a model directory (no config.json)")
        return path
    name = str(id_or_dir)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(
            f"{name}: no such model directory, and not a hub id ('org/name' or 'name')"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(snapshot_download(name, allow_patterns=HUB_FILES))
    except LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        raise ModelNotFoundError(
            f"{name}: not a local directory, and as a hub id not in the local Hugging Face cache "
            f"and {why}; "
            f"download it where there is "
            f"internet (`hf download {name} --local-dir DIR`) and pass that directory instead"
        ) from None
    except HFValidationError:
        raise ModelNotFoundError(
            f"{name}: no such model directory, and not a valid hub id"
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(
            f"{name}: no such model on the Hugging Face hub (or it is private)"
        ) from None
    except HfHubHTTPError as e:
        raise ModelNotFoundError(
            f"{name}: hub request failed ({e}); pass a local directory instead"
        ) from None


PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def check_weights(path: Path) -> None:
    """Refuse a model directory whose weights are not safetensors (unpickling a file
    can run code, so pickled weights are never read) or whose safetensors files are
    cut short or damaged; one line that says what to do."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickled = sorted(f.name for pattern in PICKLED_WEIGHTS for f in path.glob(pattern))
        if not pickled:
            raise ModelNotFoundError(f"{path}: no model weights (*.safetensors)")
        arch = (
            json.loads((path / "config.json").read_text()).get("architectures") or ["AutoModel"]
        )[0]
        raise ModelNotFoundError(
            f"{path}: weights only in pickle format ({', '.join(pickled)}); genact reads "
            "safetensors only. Convert them "
            'on a machine you trust: python -c "import transformers as t; '
            f"t.{arch}.from_pretrained('{path}')"
            f".save_pretrained('{path}-safetensors')\" and pass {path}-safetensors"
        )
    for f in files:
        try:
            with safe_open(str(f), "pt"):
                pass
        except (SafetensorError, OSError) as e:
            raise ModelNotFoundError(
                f"{f}: not a complete safetensors file ({e}); copy or download it again"
            ) from None


def load_weights(model_cls, path: Path, **kwargs):
    """`model_cls.from_pretrained(path)` from safetensors only (see check_weights),
    refused when any weight is not finite (a run that diverged)."""
    check_weights(path)
    model = model_cls.from_pretrained(path, use_safetensors=True, **kwargs)
    check_finite(model.state_dict().items(), str(path))
    return model


class NonFiniteWeightsError(GenactError, ValueError):
    """Weights holding NaN or infinity: a run that diverged; never saved nor used."""


def check_finite(named_tensors, where: str) -> None:
    """Raise NonFiniteWeightsError naming the first tensors of `named_tensors`
    ((name, tensor) pairs) with a NaN or an infinity."""
    import torch

    bad = [
        name
        for name, t in named_tensors
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if bad:
        raise NonFiniteWeightsError(
            f"{where}: {len(bad)} weight tensor(s) hold NaN or infinity (e.g. "
            f"{', '.join(bad[:3])}); the run that made them diverged"
        )


PREPROCESSOR_CONFIG = "preprocessor_config.json"


def load_preprocessor_config(path: Path) -> dict:
    """The model's image preprocessing config (mean / std), read as plain JSON so no
    image-processor backend (PIL, torchvision) is needed; {} when absent."""
    file = path / PREPROCESSOR_CONFIG
    return json.loads(file.read_text()) if file.exists() else {}
