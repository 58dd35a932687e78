"""The model zoo: one file per model family; importing it registers each model's training recipe."""

from .fcn import FCN  # noqa: F401  (registers fcn32s, fcn16s, fcn8s)
from .lenet import LeNet5  # noqa: F401  (registers the "lenet" recipe)
from .yolo import YOLOv1  # noqa: F401  (registers "yolov1", "yolov1-paper", "fast-yolo")
from .transformer import Transformer  # noqa: F401,E402  (registers "transformer", "transformer-base")
from .convs2s import ConvS2S  # noqa: F401,E402  (registers "convs2s")
from .lstm import AddingLSTM, CharLSTM, ReberLSTM  # noqa: F401,E402  (registers "lstm-adding", "lstm-reber", "char-lm")
from .seq2seq import Seq2Seq  # noqa: F401,E402  (registers "seq2seq")
from .bahdanau import BahdanauAttention  # noqa: F401,E402  (registers "bahdanau")
from .nin import NIN  # noqa: F401  (registers "nin")
from .resnet import CifarResNet, ResNet  # noqa: F401  (registers resnet18..152 and resnet20..110)
from .gpt import GPT  # noqa: F401,E402  (registers "gpt")
from .bert import BertModel  # noqa: F401,E402  (registers "bert", "bert-finetune")
