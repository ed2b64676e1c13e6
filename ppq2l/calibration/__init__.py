"""Per-class decision thresholds: policies, the vectorised search, held-out evaluation by
cross-fitting, and the thresholds.json and scores.npz files. Numpy only (no torch), so the
deploy side reads thresholds files with the same code."""
