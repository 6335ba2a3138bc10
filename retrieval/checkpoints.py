"""Checkpoints of a build's image embeddings, so that a build killed at any moment (kill -9, power cut, Ctrl-C)
loses at most the vectors of its last few hundred images: the next build embeds only what no checkpoint and no
previous generation holds, and ends with the same index.

Every `CHECKPOINT_EVERY` new vectors of a model become one part file in the index folder, outside any
generation (`IndexFolder.checkpoint_dir`): the images' sha256 keys, the float32 vectors and the weights
version, written under a temporary name and renamed, so a reader sees a whole part or none. A part that cannot
be read or does not fit the model (dimension, version, vectors not finite or not unit length) is ignored: at
worst its images are embedded again, never is a build stopped by it. Once a generation holding the vectors is
published, the build removes the model's checkpoints (`IndexFolder.clear_checkpoints`).
"""

from __future__ import annotations

import os

import numpy as np

from .atomic import write_atomic
from .layout import IndexFolder

# A part per 512 new vectors: a kill loses at most 512 images' embedding (~15 s of the two offline image models
# on 2 cores) plus the chunk in flight, while a 20,000-image archive writes only ~40 small parts per model
# (512 x dim x 4 bytes: 0.5 MB at 256-d, 2.6 MB at 1280-d), whose writes cost nothing measurable. A multiple of
# the read chunk (image_pass.CHUNK = 64), so a part closes on a chunk boundary.
CHECKPOINT_EVERY = 512
UNIT_TOLERANCE = 1e-3  # stored vectors are L2-normalised; anything else is not ours


class Checkpoints:
    """One model's checkpoints in one index folder: `load` what earlier interrupted builds embedded, `add`
    what this build embeds (written every `every` vectors), `flush` the rest at the end of the read."""

    def __init__(self, folder: IndexFolder, model: str, version: str, dim: int, every: int | None = None,
                 log=print):
        self.folder, self.model, self.version, self.dim = folder, model, version, dim
        self.every = every or CHECKPOINT_EVERY
        self.log = log
        self._keys: list[str] = []
        self._vectors: list[np.ndarray] = []
        self.written = 0  # vectors this build wrote to parts

    def load(self) -> dict[str, np.ndarray]:
        """{image sha256: vector} from every readable part of this model and version; bad parts are skipped."""
        vectors: dict[str, np.ndarray] = {}
        for path in self.folder.checkpoint_parts(self.model, self.version):
            try:
                keys, block = self._read(path)
            except Exception as error:  # np.load raises many kinds for a damaged file: never fatal, re-embed
                self.log(f"Ignoring checkpoint {path.name} of {self.model} ({type(error).__name__}: {error}); "
                         f"its images are embedded again.")
                continue
            vectors.update(zip(keys, block))
        return vectors

    def _read(self, path) -> tuple[list[str], np.ndarray]:
        with np.load(path, allow_pickle=False) as part:
            keys, block, version = part["keys"], part["vectors"], str(part["version"])
        if version != self.version:
            raise ValueError(f"made by weights {version!r}, not {self.version!r}")
        if keys.ndim != 1 or block.dtype != np.float32 or block.shape != (len(keys), self.dim):
            raise ValueError(f"holds {block.shape} {block.dtype} vectors for {keys.shape} keys; expected "
                             f"({len(keys)}, {self.dim}) float32")
        norms = np.linalg.norm(block, axis=1)
        if not np.all(np.isfinite(block)) or np.any(np.abs(norms - 1) > UNIT_TOLERANCE):
            raise ValueError("holds vectors that are not finite unit vectors")
        return [str(key) for key in keys.tolist()], block

    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        """Vectors this build embedded; a part is written once `every` of them are waiting."""
        self._keys.extend(keys)
        self._vectors.extend(np.asarray(vectors, dtype=np.float32))
        if len(self._keys) >= self.every:
            self.flush()

    def flush(self) -> None:
        """Write the waiting vectors as one part (atomically). A failed write is reported, not fatal: the
        vectors are still in this build, only a later resume would embed them again."""
        if not self._keys:
            return
        keys, vectors = self._keys, np.stack(self._vectors)
        self._keys, self._vectors = [], []

        def write(temporary):
            with open(temporary, "wb") as handle:
                np.savez(handle, keys=np.asarray(keys, dtype=str), vectors=vectors, version=np.asarray(self.version))
                handle.flush()
                os.fsync(handle.fileno())

        try:
            write_atomic(self.folder.new_checkpoint_part(self.model, self.version), write)  # all of a part or none
            self.written += len(keys)
        except OSError as error:
            self.log(f"Could not write a checkpoint of {self.model} ({error}); the build goes on without it.")


__all__ = ["CHECKPOINT_EVERY", "Checkpoints"]
