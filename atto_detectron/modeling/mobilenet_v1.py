"""MobileNet-V1 (Howard et al., 2017), the baseline of Table 2 that torchvision lacks."""

from torch import nn

__all__ = ["MobileNetV1"]

# (output channels, stride) of the 13 depthwise-separable blocks, width multiplier 1.0.
_BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def _conv_bn_relu(in_channels, out_channels, kernel_size, stride, groups=1):
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MobileNetV1(nn.Module):
    """
    3x3 conv (32, stride 2), 13 blocks of [3x3 depthwise -> BN -> ReLU -> 1x1 -> BN -> ReLU],
    global average pool, FC. Input ``(N, 3, 224, 224)``, output ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers = [_conv_bn_relu(3, 32, 3, stride=2)]
        channels = 32
        for out_channels, stride in _BLOCKS:
            layers.append(_conv_bn_relu(channels, channels, 3, stride, groups=channels))
            layers.append(_conv_bn_relu(channels, out_channels, 1, stride=1))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))
