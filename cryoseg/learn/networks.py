"""The networks (torch; imported only when needed).

``SeedUNet``: the U-Net of the particle-detection seed (DeepFinder's, 2 down and 2 up transitions):
2 conv 32 → pool → 2 conv 48 → pool → 4 conv 64 → up, conv 64 (k 2), concat → 2 conv 48 → up, conv 48
(k 2), concat → 2 conv 32 → 1×1×1 head; ReLU after every convolution, no normalisation layers. The
head ends in a sigmoid for MaskNet (probabilities) and a ReLU for CenterNet (non-negative
regression, trained on the output before the ReLU). Semantic masks use MONAI's residual 3-D U-Net;
the particle detector scores candidate patches with :class:`CandidateNet`.
"""
from . import require_ml

require_ml()

import torch  # noqa: E402
from torch import nn  # noqa: E402

SEED_CHANNELS = (32, 48, 64)
HEADS = {'sigmoid': nn.Sigmoid, 'relu': nn.ReLU}
PATCH_MULTIPLE = 4  # two poolings by 2


def _convs(channels_in, channels_out, count, kernel=3):
    layers = []
    for index in range(count):
        layers += [nn.Conv3d(channels_in if index == 0 else channels_out, channels_out, kernel, padding='same'),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SeedUNet(nn.Module):
    def __init__(self, channels=SEED_CHANNELS, head='sigmoid'):
        super().__init__()
        c1, c2, c3 = channels
        self.down1 = _convs(1, c1, 2)
        self.down2 = _convs(c1, c2, 2)
        self.bottom = _convs(c2, c3, 4)
        self.pool = nn.MaxPool3d(2)
        self.upsample = nn.Upsample(scale_factor=2, mode='nearest')
        self.up2 = _convs(c3, c3, 1, kernel=2)
        self.merge2 = _convs(c3 + c2, c2, 2)
        self.up1 = _convs(c2, c2, 1, kernel=2)
        self.merge1 = _convs(c2 + c1, c1, 2)
        self.head = nn.Conv3d(c1, 1, 1)
        self.activation = HEADS[head]()

    def forward(self, x):
        return self.activation(self.raw(x))

    def raw(self, x):
        """The head's output before its activation (what a ReLU head is trained on: a ReLU output
        stuck at 0 would pass no gradient back)."""
        skip1 = self.down1(x)
        skip2 = self.down2(self.pool(skip1))
        x = self.bottom(self.pool(skip2))
        x = self.merge2(torch.cat([self.up2(self.upsample(x)), skip2], 1))
        x = self.merge1(torch.cat([self.up1(self.upsample(x)), skip1], 1))
        return self.head(x)


class CandidateNet(nn.Module):
    """Scores the patch around a particle candidate: three levels of two 3×3×3 convolutions with
    batch normalisation (the last level one), max pooling between them, global average pooling,
    dropout and one logit. Small on purpose: a few hundred examples train it in a minute on a CPU."""

    def __init__(self, channels=(8, 16, 32)):
        super().__init__()
        layers, previous = [], 1
        for level, width in enumerate(channels):
            for _ in range(1 if level == len(channels) - 1 else 2):
                layers += [nn.Conv3d(previous, width, 3, padding=1), nn.BatchNorm3d(width), nn.ReLU(inplace=True)]
                previous = width
            if level < len(channels) - 1:
                layers.append(nn.MaxPool3d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(previous, 1))

    def forward(self, x):
        return self.head(self.features(x))


def semantic_unet(channels=(16, 32, 64)):
    """MONAI's 3-D U-Net (two strided down-samplings, one residual unit per level), one logit output."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=1, channels=tuple(channels), strides=(2,) * (len(channels) - 1),
                num_res_units=1)


def build(architecture):
    """A network from its description: ``{'type': 'seed_unet', 'channels': [...], 'head': ...}`` or
    ``{'type': 'monai_unet' or 'candidate_net', 'channels': [...]}``."""
    if architecture['type'] == 'seed_unet':
        return SeedUNet(tuple(architecture['channels']), architecture['head'])
    if architecture['type'] == 'candidate_net':
        return CandidateNet(tuple(architecture['channels']))
    if architecture['type'] == 'monai_unet':
        return semantic_unet(architecture['channels'])
    raise ValueError(f"unknown network type {architecture['type']!r}")


def device():
    """The first GPU when torch sees one, else the CPU."""
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
