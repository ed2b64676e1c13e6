"""Evaluation reports: report.html (offline, figures beside it) and per_class.csv from saved
scores and the thresholds in use. The figures need matplotlib, an optional dependency."""
