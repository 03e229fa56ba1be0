"""The line recognizer: a small convolutional network with a CTC head.

Input is what the Go engine feeds a recognition model: N x 3 x 32 x W,
pixels scaled to [-1, 1], lines padded on the right with 0. The network
averages the channels, reduces the height to 2 rows in five conv layers
(width stride 4), then reads along the width with residual 1-D
convolutions. Output is N x W/4 x classes of probabilities (softmax), the
layout of PaddleOCR's recognizers, so the engine's CTC decoding applies
unchanged."""

import torch
from torch import nn

import charset
from render import HEIGHT

STRIDE = 4


def _conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Residual(nn.Module):
    def __init__(self, ch, k=5, dropout=0.1):
        super().__init__()
        self.conv = nn.Conv1d(ch, ch, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm1d(ch)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return x + self.drop(torch.relu(self.bn(self.conv(x))))


class Recognizer(nn.Module):
    def __init__(self, classes=charset.NUM_CLASSES, width=256, blocks=4):
        super().__init__()
        self.features = nn.Sequential(
            _conv(1, 32), nn.MaxPool2d(2, 2),            # 16 x W/2
            _conv(32, 64), nn.MaxPool2d(2, 2),           # 8 x W/4
            _conv(64, 128), _conv(128, 128), nn.MaxPool2d((2, 1)),  # 4 x W/4
            _conv(128, 192), nn.MaxPool2d((2, 1)),       # 2 x W/4
        )
        rows = HEIGHT // 16
        self.project = nn.Sequential(nn.Conv1d(192 * rows, width, 1, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[Residual(width) for _ in range(blocks)])
        self.head = nn.Conv1d(width, classes, 1)

    def logits(self, x):
        """N x C x T class scores."""
        x = x.mean(dim=1, keepdim=True)
        f = self.features(x)
        n, c, h, w = f.shape
        f = f.reshape(n, c * h, w)
        return self.head(self.blocks(self.project(f)))

    def forward(self, x):
        """N x T x C probabilities, for export and inference."""
        return torch.softmax(self.logits(x), dim=1).permute(0, 2, 1)


def steps(width):
    """Output time steps of a line width."""
    return width // STRIDE
