"""Build a variant's PyTorch model and load weights into it, with errors a user can act on."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from edgevision.errors import BadInput
from edgevision.models.registry import ModelVariant, get_variant


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a checkpoint file: plain, or wrapped as {"model": ...} / {"state_dict": ...}.

    Checkpoints are untrusted input, so only tensors and plain containers are unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"--weights {path}: no such file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as e:
        why = ("corrupt, or it holds objects other than tensors, which untrusted checkpoints may not"
               if "weights only" in str(e).lower() else (str(e).strip().splitlines() or [type(e).__name__])[0][:120])
        raise BadInput(f"--weights {path}: not a readable PyTorch checkpoint ({why})") from None
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BadInput(f"--weights {path}: expected a state_dict of tensors, got {type(obj).__name__}")
    return obj


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """timm and Hugging Face checkpoints: tensors only by construction, so nothing to unpickle."""
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise BadInput(f"--weights {path}: reading .safetensors needs the safetensors package "
                       f"(pip install 'edgevision[export]')") from None
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise BadInput(f"--weights {path}: not a readable .safetensors file "
                       f"({(str(e).strip().splitlines() or [type(e).__name__])[0][:120]})") from None


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: Path | str) -> nn.Module:
    """Strict load that names the first few missing/unexpected/mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        raise BadInput(f"--weights {source}: keys do not match this model: {'; '.join(parts)}; "
                       f"is it a checkpoint of another model?")
    if shapes:
        raise BadInput(f"--weights {source}: shapes do not match: {'; '.join(shapes[:2])}; "
                       f"if the class count differs, pass --labels with one class name per line")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    return model


def build_model(variant: ModelVariant, *, weights: Path | None = None, random_seed: int | None = None,
                num_classes: int | None = None) -> nn.Module:
    """The FP32 reference in eval mode: user weights, else random init (seeded), else bundled weights."""
    if random_seed is not None:
        torch.manual_seed(random_seed)
        model = variant.build(num_classes)
    else:
        path = weights or variant.weights_path
        if path is None:
            raise BadInput(f"model '{variant.name}' ships no weights; pass --weights PATH (a state_dict of this "
                           f"model) or --random-weights for speed tests")
        config = checkpoint_config(path) if variant.config_in_weights else None
        model = load_into(variant.build(num_classes, config), read_state_dict(path), path)
        if variant.config_in_weights:
            model.scene_size = teacher_scene_size(path)
    if hasattr(model, "after_load"):
        model.after_load()
    return model.eval()


def teacher_scene_size(path: Path) -> int | None:
    """The synthetic scene size of the registered teacher a student checkpoint names (``"teacher"``, written by
    ``distill``): the student is judged on the scenes its teacher was; None when the teacher has none of its own."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    teacher = obj.get("teacher") if isinstance(obj, dict) else None
    if not isinstance(teacher, str):
        return None
    try:
        return get_variant(teacher).scene_size
    except BadInput:  # a teacher this version does not register: the student's own input size
        return None


def checkpoint_config(path: Path) -> dict:
    """The hyperparameters a student checkpoint carries (``edgevision_config``, written by ``distill``)."""
    read_state_dict(path)  # the same checks and one-line errors as any checkpoint
    obj = torch.load(path, map_location="cpu", weights_only=True)
    config = obj.get("edgevision_config") if isinstance(obj, dict) else None
    if not isinstance(config, dict):
        raise BadInput(f"--weights {path}: no edgevision_config in it; this model takes a student checkpoint "
                       f"written by `edgevision distill`")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
