"""The one-command demo: a real Scipion project on embedded sample data.

``make demo`` (or ``python -m cryoseg.demo``) generates phantom tomograms with ground truth, imports
them with scipion-em-tomo's import protocol, runs cryoseg's protocols in a chain, and writes a report
of PNG figures (slices with ground truth and results).
"""
import argparse
import os
import sys

import matplotlib
import numpy as np

matplotlib.use('Agg')

from pyworkflow.project import Manager  # noqa: E402
from tomo.protocols import ProtImportTomograms  # noqa: E402

from . import plots  # noqa: E402
from .core.mrcio import read_volume  # noqa: E402
from .core.phantom import write_sample_data  # noqa: E402

PROJECT_NAME = 'cryoseg_demo'
SAMPLING = 10.0


class Demo:
    """Runs protocols in one project and keeps what the report needs."""

    def __init__(self, project_name, tomogram_count):
        manager = Manager()
        if manager.hasProject(project_name):
            manager.deleteProject(project_name)
        self.project = manager.createProject(project_name)
        os.chdir(self.project.getPath())  # pyworkflow resolves run paths relative to the project
        self.data_dir = os.path.join(self.project.getPath(), 'sample_data')
        self.report_dir = os.path.join(self.project.getPath(), 'report')
        os.makedirs(self.report_dir, exist_ok=True)
        self.tomogram_count = tomogram_count
        self.figures = []

    def run(self, protocol_class, label, **params):
        prot = self.project.newProtocol(protocol_class, objLabel=label, **params)
        print(f"running {label} ...", flush=True)
        self.project.launchProtocol(prot, wait=True)
        if not prot.isFinished():
            raise RuntimeError(f"{label} did not finish ({prot.getStatus()}); see its log in "
                               f"{prot.getLogPaths()[0]}")
        return prot

    def import_tomograms(self):
        self.truths = write_sample_data(self.data_dir, count=self.tomogram_count, seed=1,
                                        missing_wedge=60.0)
        prot = self.run(ProtImportTomograms, 'import sample tomograms', filesPath=self.data_dir,
                        filesPattern='{TS}.mrc', samplingRate=SAMPLING)
        self.tomograms = prot.Tomograms
        return prot

    def report_ground_truth(self):
        """Central xy slice of each tomogram with its ground-truth particles circled."""
        fig, axes = plots.plt.subplots(1, len(self.truths), figsize=(5 * len(self.truths), 5))
        for ax, (ts_id, truth) in zip(np.atleast_1d(axes), self.truths.items()):
            volume, _ = read_volume(os.path.join(self.data_dir, f'{ts_id}.mrc'))
            z = volume.shape[0] // 2
            near = [p['centre'][:2] for p in truth.particles if abs(p['centre'][2] - z) < p['diameter'] / 20]
            plots.plot_slice_with_points(ax, plots.orthogonal_slices(volume, (z, 0, 0))[0], near,
                                         title=f'{ts_id}: particles crossing z={z} (ground truth)')
        self.figures.append(plots.save(fig, os.path.join(self.report_dir, '01_ground_truth.png')))

    def make_masks(self):
        """Statistics masks of the sample tomograms; the report gets the viewer's figure."""
        from .protocols import ProtCryoSegMakeMask
        from .viewers.viewer_make_mask import mask_figure

        prot = self.run(ProtCryoSegMakeMask, 'make mask', inputTomograms=self.tomograms, threshold=0.5)
        self.masks = prot.tomoMasks
        self.figures.append(plots.save(mask_figure(prot), os.path.join(self.report_dir, '02_make_mask.png')))
        return prot


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--project', default=PROJECT_NAME, help='project name (replaced if it exists)')
    parser.add_argument('--tomograms', type=int, default=2, help='number of sample tomograms')
    args = parser.parse_args(argv)

    demo = Demo(args.project, args.tomograms)
    demo.import_tomograms()
    demo.report_ground_truth()
    demo.make_masks()
    print(f"\nProject: {demo.project.getPath()}")
    print(f"Report:  {demo.report_dir}")
    for figure in demo.figures:
        print(f"  {os.path.basename(figure)}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
