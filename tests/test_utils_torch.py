"""pyfastdl.utils.load_torch_state_dict: a ResNet-18 built in torch with torchvision's layout and
names loads into pyfastdl.models.resnet18() and gives the same outputs; mismatched names and shapes
are named in the error."""

import numpy as np
import pytest
from conftest import requires_torch

import pyfastdl
from pyfastdl.utils import load_torch_state_dict

pytestmark = requires_torch


def torchvision_resnet18(num_classes):
    """torchvision.models.resnet18's modules and names, written out (torchvision is not a dependency)."""
    import torch.nn as nn

    class BasicBlock(nn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                                nn.BatchNorm2d(planes))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            widths, inplanes = (64, 128, 256, 512), 64
            for i, planes in enumerate(widths, 1):
                stride = 1 if i == 1 else 2
                setattr(self, f"layer{i}", nn.Sequential(BasicBlock(inplanes, planes, stride),
                                                         BasicBlock(planes, planes, 1)))
                inplanes = planes
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet()


def test_torchvision_resnet18_weights_give_the_same_outputs(rng):
    import torch

    ours = pyfastdl.models.resnet18()
    classes = ours.fc.weight.shape[0]
    theirs = torchvision_resnet18(classes)
    with torch.no_grad():  # running statistics that are not 0 and 1, so the buffers matter
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    theirs.eval()
    missing, unexpected = load_torch_state_dict(ours, theirs.state_dict())
    assert not missing and not unexpected
    ours.eval()
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = theirs(torch.from_numpy(x)).numpy()
    got = ours(pyfastdl.tensor(x)).detach().numpy()
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5


def test_names_and_shapes_are_checked():
    import torch

    model = pyfastdl.models.lenet()
    sd = {k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()}
    load_torch_state_dict(model, sd)
    bad = dict(sd)
    bad["f6.weight"] = torch.zeros(84, 121)
    bad["extra.weight"] = torch.zeros(3)
    del bad["c1.bias"]
    with pytest.raises(ValueError) as err:
        load_torch_state_dict(model, bad)
    message = str(err.value)
    assert "size mismatch for f6.weight" in message and "(84, 121)" in message
    assert '"extra.weight"' in message and '"c1.bias"' in message
    with pytest.raises(TypeError, match="'c1.weight' is a list"):
        load_torch_state_dict(model, {"c1.weight": [1, 2]})
    with pytest.raises(TypeError, match="mapping"):
        load_torch_state_dict(model, [1, 2])
