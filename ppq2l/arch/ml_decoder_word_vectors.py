"""Word vectors for a zero-shot ML-Decoder: one row per class, read from a .npy file (numpy, no
pickles) or a .pt/.pth file (the one weight-file reader, weights-only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ppq2l.errors import ConfigError, DataError

WORD_VECTOR_SUFFIXES = (".npy", ".pt", ".pth")
WORD_VECTOR_ADVICE = "save the vectors as one [classes, word_dim] tensor, or as a .npy array"


def load_word_vectors(path: Path) -> Tensor:
    """A float32 tensor [classes, word_dim] from `path`. The official NUS-WIDE file
    (wordvec_array.pth) stores [300, classes]: transpose it (and pick the classes) first."""
    if path.suffix.lower() not in WORD_VECTOR_SUFFIXES:
        raise ConfigError(f"Arch.word_vectors: {str(path)!r} must be a {' or '.join(WORD_VECTOR_SUFFIXES)} "
                          "file holding a [classes, word_dim] array")
    if not path.is_file():
        raise ConfigError(f"Arch.word_vectors: file {str(path)!r} does not exist")
    if path.suffix.lower() == ".npy":
        content = read_npy(path)
    else:
        # Imported here: the ppq2l.engine package imports ppq2l.arch, which imports this module.
        from ppq2l.engine.checkpoint import read_weight_file

        content = read_weight_file(path, "word vector file", advice=WORD_VECTOR_ADVICE)
    if not isinstance(content, Tensor):
        raise DataError(f"word vector file {str(path)!r} holds a {type(content).__name__}; "
                        "expected one array/tensor of shape [classes, word_dim]")
    if content.dim() != 2 or min(content.shape) < 1:
        raise DataError(f"word vector file {str(path)!r} holds shape {tuple(content.shape)}; "
                        "expected [classes, word_dim]")
    if not content.is_floating_point() or not torch.isfinite(content).all():
        raise DataError(f"word vector file {str(path)!r} must hold finite floating-point values, "
                        f"got dtype {content.dtype}")
    return content.to(torch.float32)


def read_npy(path: Path) -> Tensor:
    """The array in .npy file `path` as a tensor; pickled objects are refused."""
    try:
        return torch.from_numpy(np.load(path, allow_pickle=False))
    except Exception as error:  # noqa: BLE001 - numpy fails on bad bytes with assorted errors
        raise DataError(f"cannot read word vectors from {str(path)!r}: {error}") from error
