"""Vision utilities shared by the detection and segmentation models: boxes, the YOLO loss, pictures."""

from .boxes import batched_nms, box_iou, nms  # noqa: F401
from .yolo import decode as yolo_decode, encode_targets as yolo_encode_targets, yolo_v1_loss  # noqa: F401
