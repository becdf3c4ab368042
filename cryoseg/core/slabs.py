"""Slab-by-slab processing along z, so that no more than one slab (plus halo) is in memory.

A local filter whose reach is ``halo`` voxels gives, on the kept part of each slab, exactly the value
it would give on the whole volume, as long as the slab is read with ``halo`` extra planes on each side
(clipped at the volume faces, where the filter's own boundary mode applies as on the whole volume).
"""
from dataclasses import dataclass

from .progress import Progress


@dataclass(frozen=True)
class Slab:
    read: slice  # planes to read from the volume (slab plus halo)
    write: slice  # planes of the result this slab produces
    keep: slice  # the same planes, relative to the read block

    def kept(self, block):
        return block[self.keep]


def iter_slabs(depth, slab, halo=0, progress=None):
    """Slabs of ``slab`` planes covering ``range(depth)``, each read with ``halo`` planes of context.

    ``progress``: a description of the work; progress lines ("description: i of n slabs") are logged
    as the slabs are done.
    """
    if slab < 1:
        raise ValueError('slab must be at least one plane')
    done = Progress(f'{progress} (slabs)', -(-depth // slab)) if progress else None
    for start in range(0, depth, slab):
        stop = min(start + slab, depth)
        lo, hi = max(start - halo, 0), min(stop + halo, depth)
        yield Slab(read=slice(lo, hi), write=slice(start, stop), keep=slice(start - lo, stop - lo))
        if done:
            done.advance()
