"""Writes tests/fixtures/npz/: small .npz files as numpy itself writes them (numpy.savez and
numpy.savez_compressed, with numpy's zip64 local headers), read by the loader's tests so that
the format is checked against numpy and not only against the tests' own writer.

Run with any Python that has numpy: python scripts/npz_fixtures.py
"""

import pathlib

import numpy as np

out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "npz"
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

# uint8 NHWC (3 channels), int64 labels: numpy.savez (stored).
x = rng.integers(0, 256, size=(6, 4, 4, 3), dtype=np.uint8)
y = np.array([0, 1, 2, 3, 4, 0], dtype=np.int64)
np.savez(out / "uint8-nhwc.npz", x_train=x, y_train=y, x_test=x[:2], y_test=y[:2])

# float32 NCHW in [0, 1], big-endian uint16 labels of shape (N, 1): numpy.savez_compressed.
x = rng.random(size=(6, 1, 5, 5), dtype=np.float32)
y = np.array([[1], [0], [1], [1], [0], [1]], dtype=">u2")
np.savez_compressed(out / "float-nchw.npz", x_train=x, y_train=y, x_test=x[:3], y_test=y[:3])

# Calibration images without labels.
np.savez_compressed(out / "calibration.npz", x=rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8))
