"""Inference throughput of the learned detector: voxels per second of tiled MaskNet + CenterNet
inference on the CPU (and on a GPU when torch sees one), with the seed's network (32/48/64 channels).

Baseline measured in the same run: one forward pass of the same network over a single patch of the
same total size, so the ratio shows what the tiling (margins, overlap, accumulation) costs. Prints a
note and exits 0 when the ``ml`` extra is not installed.
"""
import os
import sys
import tempfile
import time

import numpy as np

from cryoseg.learn import missing_ml_message

SHAPE = (64, 192, 192)  # z, y, x voxels
PATCH = 96


def main():
    message = missing_ml_message()
    if message:
        print(f'bench/learned.py skipped: {message}')
        return 0
    import torch

    from cryoseg.learn.networks import SeedUNet
    from cryoseg.learn.training import DETECTOR, load_model, save_model

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.manual_seed(0)
    volume = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    networks = {'mask': SeedUNet(head='sigmoid'), 'centre': SeedUNet(head='relu')}
    architecture = lambda head: dict(type='seed_unet', channels=[32, 48, 64], head=head)  # noqa: E731
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'model.pt')
        save_model(path, dict(kind=DETECTOR, patch=56, voxel_size=10.0, diameter=200.0,
                              architectures={'mask': architecture('sigmoid'), 'centre': architecture('relu')}),
                   networks)
        model = load_model(path)
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    for device in devices:
        for net in model.networks.values():
            net.to(device)
        model.predict(volume[:PATCH // 2, :PATCH, :PATCH], patch=PATCH)  # warm-up
        start = time.perf_counter()
        model.predict(volume, patch=PATCH)
        tiled = time.perf_counter() - start
        # baseline: the two networks on one block of the same number of voxels, no tiling
        block = torch.from_numpy(volume[:, :, :]).reshape(1, 1, *SHAPE).to(device, memory_format=torch.channels_last_3d)
        start = time.perf_counter()
        with torch.no_grad():
            for net in model.networks.values():
                net(block)
        whole = time.perf_counter() - start
        voxels = np.prod(SHAPE)
        print(f"{device}: tiled inference (MaskNet + CenterNet, {PATCH}^3 patches) of {SHAPE[::-1]} voxels: "
              f"{tiled:.1f} s = {voxels / tiled:,.0f} voxels/s; one whole-block pass {whole:.1f} s = "
              f"{voxels / whole:,.0f} voxels/s; tiling overhead x{tiled / whole:.2f}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
