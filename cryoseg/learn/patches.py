"""Training patches with augmentation that keeps the missing wedge in place (numpy).

A tomogram's missing wedge lies about the z axis (the beam direction), opening along the tilt axis.
Flips of x, y or z and the 180° rotation about z (a flip of x and y) map the wedge onto itself, so
they are always used. Quarter turns about z keep the wedge about z but exchange the x and y axes, and
with them the direction of the tilt axis; they are optional. Rotations that tilt the z axis (the
upstream 90° z-x rotations) would move the wedge and teach the network artefacts it never sees in
real data, so none is offered.
"""
import numpy as np

from ..core.errors import CryoSegInputError


def augment(arrays, rng, quarter_turns=False):
    """The same random flips (and quarter turn about z) applied to every array of ``arrays``; the
    last three axes are [z, y, x]."""
    flips = [axis for axis in (-3, -2, -1) if rng.random() < 0.5]
    turns = int(rng.integers(4)) if quarter_turns else 0
    result = []
    for array in arrays:
        if flips:
            array = np.flip(array, axis=flips)
        if turns:
            array = np.rot90(array, turns, axes=(-2, -1))
        result.append(np.ascontiguousarray(array))
    return result


def _pad_to(array, patch, mode):
    pads = [(0, 0)] * (array.ndim - 3) + [(0, max(patch - n, 0)) for n in array.shape[-3:]]
    return np.pad(array, pads, mode=mode) if any(p[1] for p in pads) else array


class PatchSampler:
    """Random cubic patches of z-scored tomograms and their targets.

    ``volumes``: float32 [z, y, x] arrays; ``targets``: per volume a [C, z, y, x] (or [z, y, x])
    array; ``centres``: per volume (n, 3) (x, y, z) positions that patches are centred on (± ``jitter``
    voxels), or None to draw patch centres uniformly. A ``background_fraction`` of the patches is
    drawn uniformly anyway, so the network also sees what is not a particle.
    """

    def __init__(self, volumes, targets, centres=None, patch=56, jitter=5, background_fraction=0.25,
                 quarter_turns=False, seed=0):
        if not volumes or len(volumes) != len(targets):
            raise CryoSegInputError('give at least one tomogram and one target per tomogram')
        self.patch, self.jitter = int(patch), int(jitter)
        self.background_fraction, self.quarter_turns = float(background_fraction), bool(quarter_turns)
        self.rng = np.random.default_rng(seed)
        self.volumes = [_pad_to(np.asarray(v, np.float32), self.patch, 'symmetric') for v in volumes]
        self.targets = [_pad_to(np.asarray(t, np.float32).reshape((-1,) + np.shape(t)[-3:]), self.patch,
                                'constant') for t in targets]
        centres = centres or [None] * len(volumes)
        self.centres = [np.zeros((0, 3)) if c is None else np.asarray(c, float).reshape(-1, 3) for c in centres]
        if all(len(c) == 0 for c in self.centres) and centres[0] is not None:
            raise CryoSegInputError('none of the tomograms has an annotated position to train on')

    def _corner(self, index, around_annotation):
        shape = np.array(self.volumes[index].shape)
        if around_annotation:
            centre = self.centres[index][self.rng.integers(len(self.centres[index]))][::-1]
            centre = centre + self.rng.integers(-self.jitter, self.jitter + 1, 3)
            corner = np.rint(centre).astype(int) - self.patch // 2
        else:
            corner = self.rng.integers(0, shape - self.patch + 1)
        return np.clip(corner, 0, shape - self.patch)

    def sample(self, batch):
        """``(inputs [B, 1, P, P, P], targets [B, C, P, P, P])`` float32."""
        inputs, targets = [], []
        annotated = [i for i, c in enumerate(self.centres) if len(c)]
        for _ in range(batch):
            around = bool(annotated) and self.rng.random() >= self.background_fraction
            index = int(self.rng.choice(annotated)) if around else int(self.rng.integers(len(self.volumes)))
            z, y, x = self._corner(index, around)
            box = (slice(z, z + self.patch), slice(y, y + self.patch), slice(x, x + self.patch))
            volume, target = augment([self.volumes[index][box], self.targets[index][(slice(None),) + box]],
                                     self.rng, self.quarter_turns)
            inputs.append(volume[None])
            targets.append(target)
        return np.stack(inputs), np.stack(targets)
