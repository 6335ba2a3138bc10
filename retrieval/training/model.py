"""The shipped network: frozen packaged backbone -> pooled features -> image head; MiniLM -> text head; save/load."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .backbone import FEATURE_SLICES, sha256_file  # sha256_file: the weights' version

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_DIM = 384


def select_features(features, feature_set: str):
    """Pick the named slices of the pooled features ('gap', 'gem', 'stages', joined by '+'), each slice
    L2-normalised so no block dominates by scale. Works on numpy arrays and torch tensors."""
    parts = []
    for name in feature_set.split("+"):
        start, stop = FEATURE_SLICES[name]
        part = features[:, start:stop]
        if isinstance(part, np.ndarray):
            part = part.astype(np.float32)
            parts.append(part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12))
        else:
            import torch

            parts.append(torch.nn.functional.normalize(part.float(), dim=1))
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=1) / np.sqrt(len(parts))
    import torch

    return torch.cat(parts, dim=1) / float(np.sqrt(len(parts)))


def feature_width(feature_set: str) -> int:
    return sum(FEATURE_SLICES[n][1] - FEATURE_SLICES[n][0] for n in feature_set.split("+"))


def make_image_head(in_dim: int, dim: int, rank: int):
    """Centring, nuisance projection (x - U U^T x, U: (in_dim, rank) orthonormal, fitted on training rows
    only) and a linear map to `dim` (identity-like when dim == 0: the frozen features, projected)."""
    import torch
    from torch import nn

    class ImageHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(in_dim))
            self.register_buffer("nuisance", torch.zeros(in_dim, rank))
            self.linear = nn.Linear(in_dim, dim, bias=False) if dim else None

        def forward(self, x):
            x = x - self.mean
            if self.nuisance.shape[1]:
                x = x - (x @ self.nuisance) @ self.nuisance.T
            if self.linear is not None:
                x = self.linear(x)
            return torch.nn.functional.normalize(x, dim=1)

    return ImageHead()


def make_text_head(dim: int, hidden: int = 512):
    """A small MLP on frozen MiniLM sentence vectors, into the image space (LiT: image tower locked)."""
    import torch
    from torch import nn

    class TextHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(TEXT_DIM, hidden), nn.GELU(), nn.Linear(hidden, dim))
            self.skip = nn.Linear(TEXT_DIM, dim, bias=False)

        def forward(self, x):
            return torch.nn.functional.normalize(self.net(x) + self.skip(x), dim=1)

    return TextHead()


def state_tensors(image_head, text_head) -> dict:
    """fp16 tensors for the safetensors file, prefixed 'image.' and 'text.'."""
    tensors = {}
    for prefix, module in (("image.", image_head), ("text.", text_head)):
        if module is None:
            continue
        for name, value in module.state_dict().items():
            tensors[prefix + name] = value.detach().to("cpu").half().contiguous()
    return tensors


def write_model_folder(out_dir: Path, tensors: dict, config: dict, extra_files: dict[str, str]) -> Path:
    """Atomically write weights + config (+ card files): a temp folder beside out_dir, then rename."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        save_file(tensors, str(temp / WEIGHTS_FILE), metadata={"format": "pt"})
        config = {**config, "version": sha256_file(temp / WEIGHTS_FILE)}
        (temp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        for name, text in extra_files.items():
            (temp / name).write_text(text.replace("{version}", config["version"]), encoding="utf-8")
        for path in temp.iterdir():
            path.chmod(0o644)  # mkstemp/mkdtemp are private by default; a model folder is shared read-only
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        temp.chmod(0o755)
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.replace(out_dir, old)
        os.replace(temp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return out_dir


def load_model_folder(folder: Path):
    """(config, image_head, text_head) after checking the weight file's sha256 against config['version']."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise RuntimeError(f"{folder} is not an xray-lite0 model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
                           f"train one with retrieval.training.train_model or re-download it.")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    actual = sha256_file(weights_path)
    if actual != config.get("version"):
        raise RuntimeError(f"{weights_path} is truncated or altered: its sha256 {actual[:12]}... does not match "
                           f"config.json version {str(config.get('version'))[:12]}...; retrain the model or "
                           f"re-download the folder.")
    try:
        tensors = load_file(str(weights_path))
    except Exception as error:
        raise RuntimeError(f"{weights_path} cannot be read ({error}); retrain the model or re-download it.") \
            from error
    image = make_image_head(feature_width(config["features"]), config["head_dim"], config["nuisance_rank"])
    image.load_state_dict({k[6:]: v.float() for k, v in tensors.items() if k.startswith("image.")}, strict=True)
    text = None
    if any(k.startswith("text.") for k in tensors):
        text = make_text_head(config["dim"], config["text_hidden"])
        text.load_state_dict({k[5:]: v.float() for k, v in tensors.items() if k.startswith("text.")}, strict=True)
        text.eval()
    return config, image.eval(), text
