"""Losses for multi-label logits; importing this package registers them in `LOSSES`."""
from ppq2l.loss import asymmetric_loss, bce_loss, combined_loss
from ppq2l.loss.asymmetric_loss import AsymmetricLoss
from ppq2l.loss.bce_loss import BCEWithLogitsLoss
from ppq2l.loss.combined_loss import CombinedLoss, build_loss

__all__ = ["AsymmetricLoss", "BCEWithLogitsLoss", "CombinedLoss", "build_loss",
           "asymmetric_loss", "bce_loss", "combined_loss"]
