"""Fixtures of the engine's tests: tiny matrices and the shared public datasets."""

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """Folder of the public datasets (env ``DATASETS_DIR``, default ``<repo>/../shared/datasets``).

    Missing data skips the test, unless ``REQUIRE_DATASETS=1`` (CI), where it fails.
    """
    path = Path(os.environ.get("DATASETS_DIR", REPO.parent / "shared" / "datasets"))
    needed = [path / "ml-100k" / "u.data", path / "online-retail" / "online_retail.csv.gz"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        reason = f"datasets not found: {', '.join(missing)} (set DATASETS_DIR)"
        if os.environ.get("REQUIRE_DATASETS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture
def tiny_ratings() -> sp.csr_matrix:
    """3 users × 3 items, worked out by hand in test_user_knn.py.

    u0: i0=5, i1=3        mean 4
    u1: i0=4,       i2=2  mean 3
    u2: i0=1, i1=5, i2=4  mean 10/3
    """
    return sp.csr_matrix(np.array([[5, 3, 0], [4, 0, 2], [1, 5, 4]], dtype=float))


@pytest.fixture
def random_implicit() -> sp.csr_matrix:
    rng = np.random.default_rng(7)
    dense = (rng.random((60, 45)) < 0.15) * rng.integers(1, 5, size=(60, 45))
    dense[5] = 0  # a user with no interactions
    return sp.csr_matrix(dense.astype(float))
