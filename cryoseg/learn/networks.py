"""The networks (torch; imported only when needed).

Semantic masks use MONAI's residual 3-D U-Net; the particle detector scores candidate patches with
:class:`CandidateNet`.
"""
from . import require_ml

require_ml()

import torch  # noqa: E402
from torch import nn  # noqa: E402

PATCH_MULTIPLE = 4  # the mask U-Net's inference patches: two down-samplings by 2


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
    """A network from its description: ``{'type': 'monai_unet' or 'candidate_net', 'channels': [...]}``."""
    if architecture['type'] == 'candidate_net':
        return CandidateNet(tuple(architecture['channels']))
    if architecture['type'] == 'monai_unet':
        return semantic_unet(architecture['channels'])
    raise ValueError(f"unknown network type {architecture['type']!r}")


def device():
    """The first GPU when torch sees one, else the CPU."""
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
