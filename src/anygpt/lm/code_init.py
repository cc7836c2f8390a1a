"""Media-code rows of a fresh LM initialised from the tokenizer's own code vectors.

The release gives every new code token a random embedding, so the LM must learn from scratch
that two image codes of a red window, or two speech units of one vowel, are alike. A tokenizer
already knows it: its codebook places alike codes near each other. Here each code's vector is
centred, projected to the LM width by a fixed random Gaussian matrix (distances kept up to
Johnson-Lindenstrauss noise) and scaled to the embedding's init std, in the input embedding and
the (untied) output head alike, so neighbouring codes start with neighbouring rows both ways.
"""

from __future__ import annotations

import torch

from anygpt.layout import TokenLayout
from anygpt.lm.expand import token_matrices


def projected_rows(vectors: torch.Tensor, width: int, std: float, seed: int) -> torch.Tensor:
    """vectors FloatTensor [C, d] -> rows [C, width]: centred, randomly projected, each entry of
    standard deviation `std` on average."""
    v = vectors.float() - vectors.float().mean(0, keepdim=True)
    proj = torch.randn(v.shape[1], width, generator=torch.Generator().manual_seed(seed))
    rows = v @ proj
    return rows * (std / rows.std().clamp_min(1e-12))


def init_code_rows(lm, layout: TokenLayout, code_vectors: dict[str, torch.Tensor | None], *, seed: int = 0) -> list[str]:
    """Overwrite, in place, the embedding and head rows of each modality's codes with its
    tokenizer's code vectors (code_vectors: modality -> FloatTensor [spec.vocab_size, d], or None
    to keep that modality's rows). -> the modalities done. The std is the model's initializer_range."""
    std = getattr(lm.config, "initializer_range", 0.02)
    matrices = token_matrices(lm)
    done = []
    for i, (modality, vectors) in enumerate(sorted(code_vectors.items())):
        if vectors is None:
            continue
        r = layout[modality]
        if vectors.shape[0] != r.spec.vocab_size:
            raise ValueError(f"{modality}: {vectors.shape[0]} code vectors for {r.spec.vocab_size} codes")
        rows = projected_rows(vectors, matrices[0].shape[1], std, seed + i)
        with torch.no_grad():
            for w in matrices:
                w[r.code_offset:r.code_end] = rows.to(w.dtype)
        done.append(modality)
    return done
