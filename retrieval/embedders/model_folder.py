"""One owner of a trained model's folder (assets/models/<name>/): where it is, its files, reading them, checking
the weights against their version, and writing the whole folder atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .weights import sha256_file

REPO = Path(__file__).resolve().parents[2]  # the checkout that holds retrieval/
ASSET_MODELS = Path("assets") / "models"  # a checkout's (and a published Space's) trained models, by name
CONFIG_FILE = "config.json"  # the recipe, and `version`: the sha256 of the weights file
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "training_card.json"
CARD_TEXT_FILE = "training_card.md"
VERSION_MARK = "{version}"  # in the card files, replaced by the weights' sha256 when the folder is written


@dataclass(frozen=True)
class ModelFolder:
    """A trained model's folder: config.json, model.safetensors, training_card.json and training_card.md.
    Everything that reads or writes one asks this class; nobody else joins a path inside it."""

    path: Path

    @classmethod
    def find(cls, name: str) -> ModelFolder | None:
        """`$XRAY_MODEL_DIR/<name>/` when it holds a config.json, else `<repo>/assets/models/<name>/` when it
        does; None when neither does."""
        from ..settings import load_settings

        root = load_settings().model_dir
        candidates = [Path(root).expanduser() / name] if root else []
        candidates.append(REPO / ASSET_MODELS / name)
        return next((cls(path) for path in candidates if cls(path).exists()), None)

    @classmethod
    def in_assets(cls, repo: Path = REPO) -> list[ModelFolder]:
        """Every folder under `<repo>/assets/models/`, by name (whether or not it holds a complete model)."""
        root = Path(repo) / ASSET_MODELS
        return [cls(path) for path in sorted(root.iterdir()) if path.is_dir()] if root.is_dir() else []

    @property
    def name(self) -> str:
        return self.path.name

    # the folder's files (Paths); nobody else joins a path inside a model folder
    config_path = property(lambda self: self.path / CONFIG_FILE)
    weights_path = property(lambda self: self.path / WEIGHTS_FILE)
    card_path = property(lambda self: self.path / CARD_FILE)
    card_text_path = property(lambda self: self.path / CARD_TEXT_FILE)

    def exists(self) -> bool:
        """True when the folder holds a config.json (what makes it a model folder)."""
        return self.config_path.is_file()

    def read_config(self) -> dict:
        """config.json; {} when it is missing or unreadable (such a folder holds no usable model)."""
        try:
            return json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def read_card(self) -> dict | None:
        """training_card.json; None when the folder has none or it cannot be read."""
        try:
            return json.loads(self.card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def read_card_text(self) -> str:
        """training_card.md ('' when there is none)."""
        return self.card_text_path.read_text(encoding="utf-8") if self.card_text_path.is_file() else ""

    def weights_version(self) -> str:
        """sha256 of model.safetensors: what config.json's `version` says of intact weights."""
        return sha256_file(self.weights_path)

    def verify(self) -> dict:
        """The config, once both files are there and the weights are the ones it names; RuntimeError otherwise."""
        if not self.config_path.is_file() or not self.weights_path.is_file():
            raise RuntimeError(f"{self.path} is not a model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
                               f"train one with retrieval.training.train_model or re-download it.")
        config = self.read_config()
        actual = self.weights_version()
        if actual != config.get("version"):
            raise RuntimeError(f"{self.weights_path} is truncated or altered: its sha256 {actual[:12]}... does not "
                               f"match {CONFIG_FILE} version {str(config.get('version'))[:12]}...; retrain the model "
                               f"or re-download the folder.")
        return config

    def read_weights(self) -> dict:
        """The tensors of model.safetensors, by name (call `verify` first)."""
        from safetensors.torch import load_file

        try:
            return load_file(str(self.weights_path))
        except Exception as error:
            raise RuntimeError(f"{self.weights_path} cannot be read ({error}); retrain the model or re-download "
                               f"it.") from error

    @classmethod
    def write(cls, path: Path, tensors: dict, config: dict, card: str, card_text: str) -> ModelFolder:
        """Write weights, config (with `version`) and card files into a temp folder beside `path`, then rename it
        over `path`: a reader sees the old folder or the new one, never a mix."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = cls(Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent)))
        try:
            save_file(tensors, str(temp.weights_path), metadata={"format": "pt"})
            config = {**config, "version": temp.weights_version()}
            temp.config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            for target, text in ((temp.card_path, card), (temp.card_text_path, card_text)):
                target.write_text(text.replace(VERSION_MARK, config["version"]), encoding="utf-8")
            for written in temp.path.iterdir():
                written.chmod(0o644)  # mkstemp/mkdtemp are private by default; a model folder is shared read-only
                with open(written, "rb") as handle:
                    os.fsync(handle.fileno())
            temp.path.chmod(0o755)
            old = None
            if path.exists():
                old = path.parent / f".{path.name}.old-{os.getpid()}"
                os.replace(path, old)
            os.replace(temp.path, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(temp.path, ignore_errors=True)
            raise
        return cls(path)
