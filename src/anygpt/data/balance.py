"""Modality balancing: mix datasets by token-count share, oversampling the small ones (the
paper's Table 7). Oversampled passes draw new directions and instructions, so repeats are not
copies of the same sequence."""

from __future__ import annotations

def repeats_for_shares(tokens: dict[str, int], shares: dict[str, float]) -> dict[str, float]:
    """Natural token counts and target shares -> how many passes over each dataset.

    No dataset is ever subsampled: the total is the smallest one at which every dataset
    reaches its share with at least one pass, i.e. T = max(tokens_i / share_i).
    """
    missing = set(shares) - set(tokens)
    if missing:
        raise ValueError(f"shares name datasets with no tokens: {sorted(missing)}")
    total_share = sum(shares.values())
    if total_share <= 0 or any(s < 0 for s in shares.values()):
        raise ValueError("shares must be non-negative and not all zero")
    norm = {d: s / total_share for d, s in shares.items() if s > 0}
    empty = [d for d in norm if tokens[d] <= 0]
    if empty:
        raise ValueError(f"datasets with a share but no tokens: {empty}")
    total = max(tokens[d] / s for d, s in norm.items())
    return {d: total * s / tokens[d] for d, s in norm.items()}


def realised_shares(tokens: dict[str, int]) -> dict[str, float]:
    total = sum(tokens.values())
    return {d: (t / total if total else 0.0) for d, t in tokens.items()}
