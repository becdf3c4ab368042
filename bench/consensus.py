"""Picking consensus speed: cryoseg's KD-tree + constrained Kruskal against the upstream greedy loop.

Prints the time of a 3 × 300,000-point consensus (target: under 5 s on a 2-core machine) and, on
3 × 10,000 points, the time of a straightforward implementation of the upstream greedy algorithm
(scipion-em-tomoviz: set 0 seeds the clusters, every other point joins the nearest centre within
the radius, O(N·clusters)) measured in the same run, as a ratio (target ≥ 50×).
"""

import numpy as np

from cryoseg.core.consensus import Picks, consensus
from timing import best_time

RADIUS = 60.0  # Å
SPACING = 200.0  # Å, mean distance between particles


def make_pickings(count, n_sets=3, seed=0):
    """``n_sets`` pickings of ``count`` particles each: 85 % found with 10 Å jitter, plus false positives."""
    rng = np.random.default_rng(seed)
    side = SPACING * count ** (1 / 3)
    truth = rng.uniform(0, side, (count, 3))
    pickings = []
    for _ in range(n_sets):
        found = truth[rng.random(count) < 0.85]
        false = rng.uniform(0, side, (count - len(found), 3))
        pickings.append(np.concatenate([found + rng.normal(0, 10, found.shape), false]))
    return pickings


def greedy_upstream(pickings, radius):
    """The upstream algorithm: votes per cluster after the greedy nearest-centre assignment
    (centres kept in a preallocated array, so only the algorithm's O(N·clusters) cost is timed)."""
    total = sum(len(p) for p in pickings)
    centres = np.empty((total, 3))
    votes = np.zeros(total, int)
    count = len(pickings[0])
    centres[:count], votes[:count] = pickings[0], 1
    for points in pickings[1:]:
        for point in points:
            distances = np.linalg.norm(centres[:count] - point, axis=1)
            nearest = int(np.argmin(distances))
            if distances[nearest] < radius:
                centres[nearest] = (centres[nearest] * votes[nearest] + point) / (votes[nearest] + 1)
                votes[nearest] += 1
            else:
                centres[count], votes[count] = point, 1
                count += 1
    return votes[:count]


def cryoseg_votes(pickings, radius):
    result = consensus([{'TS_01': Picks(p)} for p in pickings], radius, k=1)
    return result.clusters['TS_01'].votes


def main():
    large = make_pickings(300_000)
    seconds, votes = best_time(cryoseg_votes, large, RADIUS)
    print(f"cryoseg, 3 x {len(large[0]):,} points: {seconds:.2f} s, {len(votes):,} particles, "
          f"{np.sum(votes == 3):,} found by all three (target < 5 s)")

    small = make_pickings(10_000, seed=1)
    fast, fast_votes = best_time(cryoseg_votes, small, RADIUS)
    slow, slow_votes = best_time(greedy_upstream, small, RADIUS)
    print(f"3 x {len(small[0]):,} points: cryoseg {fast:.3f} s, upstream greedy {slow:.2f} s, "
          f"ratio {slow / fast:.0f}x (target >= 50x)")
    print(f"  all three agree on: cryoseg {np.sum(fast_votes == 3):,}, greedy {np.sum(slow_votes == 3):,}; "
          f"max votes cryoseg {fast_votes.max()}, greedy {slow_votes.max()} (duplicates inflate greedy votes)")


if __name__ == '__main__':
    main()
