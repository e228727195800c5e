"""Inference: from a trained model to scores, label maps and attention maps.

`multi_scale` predicts class probabilities (single scale, multi-scale + flip,
sliding window), `evaluation` scores them against a split (`distributed_evaluation`: on
every device and worker, the same integer counts), `prediction` turns
images on disk into label PNGs and overlays (`bulk_prediction`: the same on
Ray Data, for large collections), and `attention_maps` shows what
the EMA unit's bases attend to; `folding` and `precision` build the fastest
inference copy of a model (BatchNorm folded, bfloat16 where it agrees).
"""

from ema_keras.inference.attention_maps import AttentionMaps, attention_grid, attention_maps
from ema_keras.inference.bulk_prediction import BulkPredictionSummary, predict_with_ray
from ema_keras.inference.distributed_evaluation import EvaluationReplicas, evaluate_on_replicas
from ema_keras.inference.evaluation import EvaluationResult, evaluate
from ema_keras.inference.folding import fold_batch_norm
from ema_keras.inference.multi_scale import (
    MULTI_SCALES,
    predict_probabilities,
    sliding_window_logits,
)
from ema_keras.inference.precision import (
    INFERENCE_PRECISIONS,
    PRECISIONS,
    InferenceChoice,
    PrecisionRefusedError,
    inference_model,
)
from ema_keras.inference.prediction import predict_files, predict_label_map

__all__ = [
    "INFERENCE_PRECISIONS",
    "MULTI_SCALES",
    "PRECISIONS",
    "AttentionMaps",
    "BulkPredictionSummary",
    "EvaluationReplicas",
    "EvaluationResult",
    "InferenceChoice",
    "PrecisionRefusedError",
    "attention_grid",
    "attention_maps",
    "evaluate",
    "evaluate_on_replicas",
    "fold_batch_norm",
    "inference_model",
    "predict_files",
    "predict_label_map",
    "predict_probabilities",
    "predict_with_ray",
    "sliding_window_logits",
]
