"""Vision utilities shared by the detection and segmentation models: boxes and their metrics."""

from .boxes import average_precision, batched_nms, box_iou, mean_average_precision, nms  # noqa: F401
from .yolo import decode as yolo_decode, encode_targets as yolo_encode_targets, yolo_v1_loss  # noqa: F401
