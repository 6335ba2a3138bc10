"""The one owner of a built index: its folder, its generations, the typed manifest and every file inside.

    DIR/current -> generations/<id>/      (a symlink, replaced atomically)
    DIR/CURRENT                           instead of the link in a published copy (Hub repos keep no symlinks)
    DIR/archive.salt                      the secret behind a DICOM archive's pseudonymous ids (never published)
    <generation>/manifest.json            what was built, from which collection, with which models
    <generation>/dataset/                 the Dataset (metadata, images, one vector column per model)
    <generation>/faiss/<model>.faiss      one flat inner-product index per model
    <generation>/models/<model>/          fitted state (TF-IDF vocabulary)
    <generation>/maps/<model>.npy         an image model's 2-D map of the collection (projection.py)
    <generation>/novelty/<model>.json     an image model's "is it in the collection?" scorer (novelty.py),
    <generation>/novelty/<model>.npy      with its category centres
    <generation>/novelty-joint.json       the "no close match" judge over its image models (joint_novelty.py)
    <generation>/evaluation.json          the summary `python -m retrieval evaluate` writes for the app
    <generation>/fusion.json              the hybrid text model's weights, fitted by `evaluate` (hybrid.py)
    DIR/checkpoints/<model>@<version>/part-NNNNNN.npz   vectors of a build not yet published (checkpoints.py),
                                          never inside a generation; removed once a generation holds them

No other module joins a path inside a generation: they ask `IndexGeneration`. A build writes a new
generation and `IndexFolder.publish` switches `current` only when it is complete, so a build killed midway
leaves the previous index untouched and loadable, and the vectors it had embedded in its checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from .atomic import write_atomic, write_json_atomic
from .errors import BrokenIndex, NoIndex
from .manifest import REBUILD, Manifest
from .vector_columns import column_vectors, row_vectors

CURRENT_FILE = "CURRENT"  # names the current generation where a symlink cannot be kept
SALT_FILE = "archive.salt"  # at the folder's root, outside every generation: publish copies generations only
SAVE_BATCH = "16MB"  # rows per write batch when a generation is saved (IndexGeneration.save_dataset)


class IndexGeneration:
    """One complete (or being written) build: every path inside it, and reading and writing its artefacts."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._manifest: Manifest | None = None

    def __repr__(self) -> str:
        return f"IndexGeneration({str(self.folder)!r})"

    @property
    def name(self) -> str:
        return self.folder.name

    # --- paths (nobody else builds them) ---------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.json"

    @property
    def dataset_path(self) -> Path:
        return self.folder / "dataset"

    @property
    def evaluation_path(self) -> Path:
        return self.folder / "evaluation.json"

    @property
    def fusion_path(self) -> Path:
        return self.folder / "fusion.json"

    @property
    def scratch_path(self) -> Path:
        """Working space of the build that writes this generation (removed before it is published)."""
        return self.folder / ".cache"

    def faiss_path(self, model: str) -> Path:
        return self.folder / "faiss" / f"{model}.faiss"

    def state_path(self, model: str) -> Path:
        """Fitted state of a model fitted on the collection (TF-IDF)."""
        return self.folder / "models" / model

    def map_path(self, model: str) -> Path:
        return self.folder / "maps" / f"{model}.npy"

    def novelty_path(self, model: str) -> Path:
        """The image model's novelty scorer (JSON: coefficients, threshold, figures)."""
        return self.folder / "novelty" / f"{model}.json"

    def novelty_centres_path(self, model: str) -> Path:
        """Its category centres, float32 (categories, dim), in the JSON's category order."""
        return self.folder / "novelty" / f"{model}.npy"

    # --- the manifest ---------------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            try:
                payload = json.loads(self.manifest_path.read_text())
            except FileNotFoundError:
                raise BrokenIndex(f"The index at {self.folder} has no manifest; {REBUILD}.") from None
            except json.JSONDecodeError as error:
                raise BrokenIndex(f"{self.manifest_path} is damaged ({error}); {REBUILD}.") from error
            self._manifest = Manifest.from_dict(payload, self.manifest_path)
        return self._manifest

    def write_manifest(self, manifest: Manifest) -> None:
        write_json_atomic(self.manifest_path, manifest.to_dict())
        self._manifest = manifest

    # --- the Dataset, its vectors and FAISS files ----------------------------------------------------------
    def load_dataset(self, verify: bool = True):
        """The Dataset of this generation, checked against the manifest's row count (`verify=False`: while
        the build that writes it has no manifest yet)."""
        import datasets

        try:
            dataset = datasets.load_from_disk(str(self.dataset_path))
        except Exception as error:
            raise BrokenIndex(f"The dataset in {self.folder} cannot be read ({error}); {REBUILD}.") from error
        if verify and len(dataset) != self.manifest.rows:
            raise BrokenIndex(f"The index in {self.folder} is inconsistent: the manifest says {self.manifest.rows} "
                              f"rows, the dataset has {len(dataset)}; {REBUILD}.")
        return dataset

    def save_dataset(self, dataset) -> None:
        """Save the rows with their vectors. `datasets` copies each write batch of images through Python while
        it saves; its default batch (~100 MB of rows) added ~580 MB to a build's memory, 16 MB batches ~130 MB
        (a 2,916-image archive, measured 2026-12-06), the same whatever the archive's size."""
        import datasets

        default = datasets.config.MAX_ROW_GROUP_SIZE
        datasets.config.MAX_ROW_GROUP_SIZE = SAVE_BATCH
        try:
            dataset.save_to_disk(str(self.dataset_path))
        finally:
            datasets.config.MAX_ROW_GROUP_SIZE = default

    def vectors(self, model: str, dataset=None) -> np.ndarray:
        """The model's vector column, (rows, dim) float32 in row order (vector_columns.py reads it)."""
        return column_vectors(self.load_dataset() if dataset is None else dataset, model)

    def row_vectors(self, model: str, rows: list[int], dataset=None) -> np.ndarray:
        """The model's vectors of a few rows, (len(rows), dim) float32 in the order given."""
        return row_vectors(self.load_dataset() if dataset is None else dataset, model, rows)

    def write_faiss(self, dataset, model: str):
        """Build and save the model's inner-product index over its vector column: exact for a collection of
        ordinary size, HNSW tuned to a recall target beyond (ann.py). Returns the choice (factory, recall)."""
        import faiss

        from .ann import choose_index

        choice = choose_index(self.vectors(model, dataset))
        self.faiss_path(model).parent.mkdir(parents=True, exist_ok=True)
        faiss.write_index(choice.index, str(self.faiss_path(model)))
        return choice

    def attach_faiss(self, dataset, model: str) -> None:
        """Load the model's FAISS file onto `dataset` (as index `model`), refusing one that does not match."""
        path = self.faiss_path(model)
        if not path.is_file():
            raise BrokenIndex(f"The FAISS index for {model!r} is missing ({path}); {REBUILD}.")
        try:
            dataset.load_faiss_index(model, str(path))
        except ValueError as error:  # datasets refuses an index whose size differs from the dataset's
            raise BrokenIndex(f"The FAISS index for {model!r} does not match the dataset ({error}); "
                              f"{REBUILD}.") from error
        except Exception as error:
            raise BrokenIndex(f"The FAISS index for {model!r} cannot be read ({error}); {REBUILD}.") from error
        index = dataset.get_index(model).faiss_index
        expected = self.manifest.models[model].dim, self.manifest.rows
        if (index.d, index.ntotal) != expected:
            raise BrokenIndex(f"The FAISS index for {model!r} has {index.ntotal} vectors of dimension {index.d}; "
                              f"the manifest says {expected[1]} of {expected[0]}. {REBUILD[0].upper()}{REBUILD[1:]}.")

    def damage(self) -> str | None:
        """Why this generation cannot be served as it is, or None when every artefact matches the manifest.
        Reads the Arrow and FAISS headers only: no model is loaded, no vector decoded."""
        import faiss
        import pyarrow as pa

        try:
            manifest = self.manifest
            rows = 0
            for path in sorted(self.dataset_path.glob("*.arrow")):
                with pa.memory_map(str(path)) as source:
                    rows += pa.ipc.open_stream(source).read_all().num_rows
            for name, entry in manifest.models.items():
                index = faiss.read_index(str(self.faiss_path(name)), faiss.IO_FLAG_MMAP)
                if (index.ntotal, index.d) != (manifest.rows, entry.dim):
                    return f"the FAISS index of {name} holds {index.ntotal} x {index.d}"
                if self.has_map(name):  # a missing map is no damage: the index serves without it
                    shape = np.load(self.map_path(name), mmap_mode="r").shape  # the header only
                    if shape != (manifest.rows, 2):
                        return f"the map of {name} holds {shape}"
        except Exception as error:
            return str(error)
        if rows != manifest.rows:
            return f"the dataset holds {rows} rows, the manifest says {manifest.rows}"
        return None

    # --- the 2-D map of the collection, per image model ---------------------------------------------------
    def has_map(self, model: str) -> bool:
        """True when a map of `model` is stored. An index built before maps existed, or a copy that left them
        out, has none: it serves without a map, and the next build adds it."""
        entry = self.manifest.models.get(model)
        return entry is not None and entry.map_digest is not None and self.map_path(model).is_file()

    def read_map(self, model: str) -> np.ndarray:
        """The model's map: every row's 2-D position, float32 (rows, 2) in row order."""
        try:
            positions = np.load(self.map_path(model))
        except (OSError, ValueError) as error:
            raise BrokenIndex(f"The map of {model!r} cannot be read ({error}); {REBUILD}.") from error
        if positions.shape != (self.manifest.rows, 2):
            raise BrokenIndex(f"The map of {model!r} holds {positions.shape} points, the index has "
                              f"{self.manifest.rows} rows; {REBUILD}.")
        return positions.astype(np.float32, copy=False)

    def write_map(self, model: str, positions: np.ndarray) -> None:
        """Store the model's map atomically (a reader sees the old file or the new, never half)."""
        write_atomic(self.map_path(model), lambda temporary: np.save(temporary, np.asarray(positions, np.float32)))

    def reuse_map(self, model: str, previous: "IndexGeneration") -> None:
        """Take over `previous`'s map of `model` as it is (same bytes, same mtime): its vectors are unchanged."""
        write_atomic(self.map_path(model), lambda temporary: shutil.copy2(previous.map_path(model), temporary))

    # --- the novelty scorer, per image model ------------------------------------------------------------
    def has_novelty(self, model: str) -> bool:
        """True when the build stored a novelty scorer of `model` (fitted, or the reason it could not be)."""
        entry = self.manifest.models.get(model)
        return entry is not None and entry.novelty_digest is not None and self.novelty_path(model).is_file()

    def read_novelty(self, model: str) -> tuple[dict, np.ndarray | None]:
        """The stored scorer: its JSON and its centres (None when it stores none: not fitted)."""
        try:
            payload = json.loads(self.novelty_path(model).read_text())
            centres = self.novelty_centres_path(model)
            return payload, (np.load(centres) if centres.is_file() else None)
        except (OSError, ValueError) as error:
            raise BrokenIndex(f"The novelty scorer of {model!r} cannot be read ({error}); {REBUILD}.") from error

    def write_novelty(self, model: str, payload: dict, centres: np.ndarray | None) -> None:
        """Store the scorer atomically, the centres first (the JSON, written last, says it is whole)."""
        path = self.novelty_centres_path(model)
        if centres is not None:
            write_atomic(path, lambda temporary: np.save(temporary, np.asarray(centres, dtype=np.float32)))
        else:
            path.unlink(missing_ok=True)
        write_json_atomic(self.novelty_path(model), payload)

    def reuse_novelty(self, model: str, previous: "IndexGeneration") -> None:
        """Take over `previous`'s scorer of `model`: its vectors, categories and sources are unchanged."""
        payload, centres = previous.read_novelty(model)
        self.write_novelty(model, payload, centres)

    def joint_novelty_path(self) -> Path:
        """The joint "no close match" judge over the index's image models (joint_novelty.py)."""
        return self.folder / "novelty-joint.json"

    def read_joint_novelty(self) -> dict:
        """The stored joint judge ({} when the generation has none)."""
        try:
            return json.loads(self.joint_novelty_path().read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise BrokenIndex(f"The joint novelty judge cannot be read ({error}); {REBUILD}.") from error

    def write_joint_novelty(self, payload: dict) -> None:
        write_json_atomic(self.joint_novelty_path(), payload)

    # --- the evaluation summary -------------------------------------------------------------------------
    def read_evaluation(self) -> dict:
        """The summary written by `evaluate` ({} when the index has not been evaluated or it is unreadable)."""
        return read_json_dict(self.evaluation_path)

    def write_evaluation(self, summary: dict) -> Path:
        """Merge `summary` into the stored one (per-model figures of earlier runs stay) and write atomically."""
        previous = self.read_evaluation()
        merged = dict(summary)
        for key in ("models", "baselines"):
            if isinstance(previous.get(key), dict):
                merged[key] = {**previous[key], **summary.get(key, {})}
        write_json_atomic(self.evaluation_path, merged)
        return self.evaluation_path

    # --- the hybrid text model's fitted fusion -------------------------------------------------------------
    def read_fusion(self) -> dict:
        """The fusion weights `evaluate` fitted on this generation ({} before it has, or when unreadable)."""
        return read_json_dict(self.fusion_path)

    def write_fusion(self, payload: dict) -> Path:
        """Store the fitted fusion atomically (the serving engine reads it again when the file changes)."""
        write_json_atomic(self.fusion_path, payload)
        return self.fusion_path


class IndexFolder:
    """An index folder: its generations and the atomic `current` switch between them."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"IndexFolder({str(self.root)!r})"

    @property
    def _generations(self) -> Path:
        return self.root / "generations"

    def current(self) -> IndexGeneration | None:
        """The generation `current` points to, or None when no build has completed yet. Without the link, the
        generation a CURRENT file names (a copy that cannot keep symlinks: a Space, a Hub dataset snapshot)."""
        link = self.root / "current"
        return IndexGeneration(link.resolve()) if link.exists() else self._named_current()

    def _named_current(self) -> IndexGeneration | None:
        """The generation named in the CURRENT text file (written by `publish_portable`), if it exists."""
        try:
            name = Path((self.root / CURRENT_FILE).read_text().strip()).name
        except OSError:
            return None
        folder = self._generations / name
        return IndexGeneration(folder.resolve()) if name and folder.is_dir() else None

    def publish_portable(self, generation: IndexGeneration) -> None:
        """Name `generation` in a CURRENT text file (atomically) instead of the `current` symlink: for a folder
        that is copied where symlinks do not survive (Hub repositories keep files, not links)."""
        shutil.rmtree(generation.scratch_path, ignore_errors=True)
        write_atomic(self.root / CURRENT_FILE, lambda temporary: temporary.write_text(generation.name + "\n"))

    def salt(self) -> bytes:
        """The folder's secret for a DICOM archive's pseudonymous ids (salted hashes of its UIDs): 32 random
        bytes created by the first build and kept at the root, outside every generation, so that `publish`,
        which copies a generation, never ships it. Whoever holds it can map the ids back to the files."""
        path = self.root / SALT_FILE
        if not path.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            temporary = self.root / f".{SALT_FILE}.{os.getpid()}"
            temporary.write_text(os.urandom(32).hex() + "\n")
            os.chmod(temporary, 0o600)
            try:
                os.link(temporary, path)  # fails if another build created it first: theirs is kept
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        try:
            return bytes.fromhex(path.read_text().strip())
        except ValueError as error:
            raise BrokenIndex(f"{path} is damaged ({error}); restore it from a backup, or delete it and "
                              f"rebuild (every archive id changes).") from error

    def require_current(self) -> IndexGeneration:
        generation = self.current()
        if generation is None:
            raise NoIndex(f"No index in {self.root}; build one with "
                              f"`python -m retrieval build --collection PATH --index {self.root}`.")
        return generation

    def new_generation(self) -> IndexGeneration:
        self._generations.mkdir(parents=True, exist_ok=True)
        folder = self._generations / (f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-"
                                      f"{time.monotonic_ns() % 10**6:06d}")
        folder.mkdir()
        return IndexGeneration(folder)

    def publish(self, generation: IndexGeneration, keep: int = 1) -> None:
        """Point `current` at `generation` atomically, then delete all but the newest `keep` older ones."""
        shutil.rmtree(generation.scratch_path, ignore_errors=True)
        temporary = self.root / f".current.{os.getpid()}"
        if temporary.is_symlink() or temporary.exists():
            temporary.unlink()
        os.symlink(Path("generations") / generation.name, temporary)
        os.replace(temporary, self.root / "current")  # rename(2) is atomic: readers see the old or the new
        self.prune(keep=keep)

    # --- checkpoints: vectors of a build that has not published yet (checkpoints.py reads and writes them) ----
    @property
    def checkpoints_path(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint_dir(self, model: str, version: str) -> Path:
        """Where a build keeps `model`'s vectors (of weights `version`) until a generation holds them. The
        version is long and holds ':' and '/': the folder names it by a digest (each part stores it in full)."""
        digest = hashlib.sha256(version.encode("utf-8")).hexdigest()[:16]
        return self.checkpoints_path / f"{_file_safe(model)}@{digest}"

    def checkpoint_parts(self, model: str, version: str) -> list[Path]:
        """The complete checkpoint files of `model` at `version`, oldest first (a part being written has a
        temporary name and is not listed)."""
        return sorted(self.checkpoint_dir(model, version).glob("part-*.npz"))

    def new_checkpoint_part(self, model: str, version: str) -> Path:
        """The name of the next part (numbered after every existing one: a resumed build adds, never overwrites)."""
        numbers = [int(match.group(1)) for path in self.checkpoint_parts(model, version)
                   if (match := re.fullmatch(r"part-(\d+)\.npz", path.name))]
        folder = self.checkpoint_dir(model, version)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"part-{max(numbers, default=-1) + 1:06d}.npz"

    def clear_checkpoints(self, model: str) -> None:
        """Remove every checkpoint of `model` (any version): a published generation now holds its vectors."""
        for folder in self.checkpoints_path.glob(f"{_file_safe(model)}@*"):
            shutil.rmtree(folder, ignore_errors=True)
        try:
            self.checkpoints_path.rmdir()  # only when no other model's checkpoints remain
        except OSError:
            pass

    def discard(self, generation: IndexGeneration) -> None:
        """Remove an unpublished generation (a failed or interrupted build)."""
        shutil.rmtree(generation.folder, ignore_errors=True)

    def prune(self, keep: int = 1) -> None:
        """Remove abandoned (unpublished, e.g. killed) and old generations, keeping `current` and `keep` others."""
        current = self.current()
        folders = sorted((p for p in self._generations.glob("*") if p.is_dir()), reverse=True)
        others = [p for p in folders if current is None or p.resolve() != current.folder]
        for folder in others[keep:]:
            shutil.rmtree(folder, ignore_errors=True)


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def read_json_dict(path: Path) -> dict:
    """A JSON object written by this program; {} when the file is missing, unreadable or not an object."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


__all__ = ["IndexFolder", "IndexGeneration"]
