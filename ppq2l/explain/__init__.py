"""Why a label fired: per-label maps (`maps`, torch: attention of the label queries, class
activation maps), their rendering as overlays (`render`, numpy and OpenCV only, shared with the
deploy predictor) and the pointing game that checks them against boxes (`pointing_game`).
Nothing is imported here, so the deploy side can use `render` without torch."""
