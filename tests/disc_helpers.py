"""The toy problem and helpers shared by the discriminator tests.

Expert pairs around (1, 1), agent pairs around (-1, -1): a 2-D Gaussian split into a 1-D
"obs" and a 1-D "action", small enough to train in seconds and easy enough that every
discriminator must separate it. The fixtures are imported by name into the test modules.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch


def toy_pairs(n: int, mean: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """2-D Gaussian N((mean, mean), 0.3 I) split into a 1-D "obs" and a 1-D "action"."""
    x = np.random.default_rng(seed).normal(mean, math.sqrt(0.3), (n, 2)).astype(np.float32)
    return x[:, :1], x[:, 1:]


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC by the rank (Mann-Whitney U) formula: P(score_pos > score_neg)."""
    ranks = np.concatenate([pos, neg]).argsort().argsort() + 1.0
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny nets: one intra-op thread is faster, and immune to a busy machine's oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy():
    """Training sets (2000 pairs each) and held-out test sets (500 each), expert and agent."""
    return {
        "expert": toy_pairs(2000, 1.0, seed=0),
        "agent": toy_pairs(2000, -1.0, seed=1),
        "expert_test": toy_pairs(500, 1.0, seed=2),
        "agent_test": toy_pairs(500, -1.0, seed=3),
    }
