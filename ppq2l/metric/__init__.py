"""Multi-label evaluation metrics: the numpy functions and the registered metric components."""
from ppq2l.metric import functional, multilabel_metrics
from ppq2l.metric.functional import (
                                     average_precision,
                                     mean_average_precision,
                                     threshold_metrics,
                                     top_k_metrics,
)
from ppq2l.metric.multilabel_metrics import MultiLabelMAP, MultiLabelThresholdMetrics, build_metrics

__all__ = ["functional", "multilabel_metrics", "average_precision", "mean_average_precision",
           "threshold_metrics", "top_k_metrics", "MultiLabelMAP", "MultiLabelThresholdMetrics",
           "build_metrics"]
