"""Shared test set-up.

Without a GPU every kernel runs in Triton's interpreter (eet_triton sets
TRITON_INTERPRET=1 on import, so it is imported first). Inputs are fresh random
draws each run; the seed is printed, and EET_TEST_SEED=<seed> replays a run.
"""

import os
import random

import pytest
import torch

import eet_triton  # noqa: F401  (first: chooses the interpreter before triton is imported)

HAS_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def fresh_seed():
    seed = int(os.environ.get("EET_TEST_SEED", random.SystemRandom().randrange(2**31)))
    torch.manual_seed(seed)
    print(f"EET_TEST_SEED={seed}")
    return seed


@pytest.fixture
def device() -> str:
    """Where kernels run: the GPU when there is one, else the CPU interpreter."""
    return "cuda" if HAS_CUDA else "cpu"
