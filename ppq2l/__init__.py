"""ppq2l: multi-label image classification (Query2Label, ML-Decoder) from one YAML config."""

__version__ = "0.1.0"
