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


def register_coordinates(project, tomograms, rows_by_tsid, sampling, box, label):
    """A SetOfCoordinates3D built from known positions, registered in ``project`` as the output of a
    (not run) coordinate-import protocol, so that later protocols can take it as input.
    ``rows_by_tsid``: ``{tsId: (xyz bottom-left-corner px, Scipion matrices or None)}``."""
    from pyworkflow.protocol import STATUS_FINISHED
    from tomo.protocols import ProtImportCoordinates3D

    from .convert import append_coordinates, tomograms_by_tsid

    prot = project.newProtocol(ProtImportCoordinates3D, objLabel=label)
    project.saveProtocol(prot)
    prot.makePathsAndClean()
    coords = prot._createSetOfCoordinates3D(tomograms)
    coords.setSamplingRate(sampling)
    coords.setBoxSize(box)
    for ts_id, tomo in tomograms_by_tsid(tomograms).items():
        if ts_id in rows_by_tsid:
            xyz, matrices = rows_by_tsid[ts_id]
            append_coordinates(coords, tomo, xyz, matrices=matrices, group_ids=np.arange(len(xyz)) + 1)
    coords.write()
    prot._defineOutputs(outputCoordinates=coords)
    prot.setStatus(STATUS_FINISHED)
    project._storeProtocol(prot)
    return prot.outputCoordinates


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

    def extract_and_average(self):
        """Extraction of the picked particles and apply-alignment/average of the oriented membrane
        proteins. Uses ``self.picked_coordinates`` / ``self.oriented_coordinates`` when earlier steps
        set them, else the ground truth (positions, and matrices from the outward normals)."""
        from .core.orientation import matrix_from_normal, scipion_matrix
        from .protocols import ProtCryoSegApplyAlignment, ProtCryoSegExtract
        from .viewers.viewer_subtomograms import average_figure, gallery_figure

        picked = getattr(self, 'picked_coordinates', None)
        if picked is None:
            picked = register_coordinates(
                self.project, self.tomograms, {ts: (np.array([p['centre'] for p in truth.particles]), None)
                                               for ts, truth in self.truths.items()},
                SAMPLING, 32, 'ground-truth particles')
        extracted = self.run(ProtCryoSegExtract, 'extract particles', inputCoordinates=picked, boxSize=32,
                             doInvert=True)
        oriented = getattr(self, 'oriented_coordinates', None)
        if oriented is None:
            oriented = register_coordinates(
                self.project, self.tomograms,
                {ts: (np.array([m['centre'] for m in truth.membrane_proteins]),
                      scipion_matrix(matrix_from_normal([m['normal'] for m in truth.membrane_proteins])))
                 for ts, truth in self.truths.items()}, SAMPLING, 24, 'ground-truth membrane proteins (oriented)')
        proteins = self.run(ProtCryoSegExtract, 'extract membrane proteins', inputCoordinates=oriented,
                            boxSize=24, doInvert=True)
        aligned = self.run(ProtCryoSegApplyAlignment, 'apply alignment and average',
                           inputSubtomograms=proteins.subtomograms)
        gallery = [(s.getObjId(), read_volume(s.getFileName())[0])
                   for s in extracted.subtomograms.iterItems(limit=24)]
        self.figures.append(plots.save(gallery_figure([v for _, v in gallery], [f'id {i}' for i, _ in gallery]),
                                       os.path.join(self.report_dir, '20_extracted_particles.png')))
        average = read_volume(aligned.average.getFileName())[0]
        self.figures.append(plots.save(
            average_figure(average, f'membrane proteins, average of {aligned.subtomograms.getSize()}'),
            os.path.join(self.report_dir, '21_membrane_protein_average.png')))
        print(f"  {extracted.subtomograms.getSize()} particles and {proteins.subtomograms.getSize()} membrane "
              f"proteins extracted; skipped: {extracted.getSkipped()}")

    def make_masks(self):
        """Statistics masks of the sample tomograms; the report gets the viewer's figure."""
        from .protocols import ProtCryoSegMakeMask
        from .viewers.viewer_make_mask import mask_figure

        prot = self.run(ProtCryoSegMakeMask, 'make mask', inputTomograms=self.tomograms, threshold=0.5)
        self.masks = prot.tomoMasks
        self.figures.append(plots.save(mask_figure(prot), os.path.join(self.report_dir, '02_make_mask.png')))
        return prot


    def segdiam_pick(self):
        """Segdiam pick on the sample tomograms inside their masks (when the make-mask step ran); the
        report gets the viewer's figure and the recall against the ground-truth particles."""
        from scipy.spatial import cKDTree

        from .convert import read_coordinates
        from .protocols import ProtCryoSegSegDiamPick
        from .viewers.viewer_segdiam import protocol_figure

        masks = getattr(self, 'masks', None)
        prot = self.run(ProtCryoSegSegDiamPick, 'segdiam pick', inputTomograms=self.tomograms, inputMasks=masks,
                        minDiameter=100.0, maxDiameter=400.0, lowpass=90.0, foregroundFraction=0.05, clustering=1,
                        numberOfThreads=2)
        for line in prot.summary():
            print(f"  {line}")
        if hasattr(prot, 'coordinates'):
            for ts_id, table in read_coordinates(prot.coordinates).items():
                truth = np.array([p['centre'] for p in self.truths[ts_id].particles], float)
                distance, _ = cKDTree(truth).query(table.xyz)
                print(f"  {ts_id}: {np.sum(distance < 3)} of {len(table)} segdiam picks within 3 voxels of a "
                      f"true particle ({len(truth)} particles)")
        self.figures.append(plots.save(protocol_figure(prot), os.path.join(self.report_dir, '15_segdiam_pick.png')))
        return prot

    def model_workflow(self):
        """Click-like user points on the sample vesicles (from the ground truth, 30 per vesicle plus a
        marker at the centre) → import user points → directional model workflow; the report compares
        the cropping-point normals with the true membrane normals."""
        from .core.model_workflow import simulate_clicks, vesicle_normals
        from .convert import read_coordinates
        from .protocols import ProtCryoSegImportMeshes, ProtCryoSegModelWorkflow
        from .viewers.viewer_model_workflow import protocol_figure

        folder = os.path.join(self.project.getPath(), 'user_points')
        os.makedirs(folder, exist_ok=True)
        for ts_id, truth in self.truths.items():
            with open(os.path.join(folder, f'{ts_id}_points.txt'), 'w') as handle:
                for vesicle in truth.vesicles:
                    for x, y, z in simulate_clicks(vesicle, truth.voxel_size, count=30, seed=vesicle['id']):
                        handle.write(f"{x:.2f} {y:.2f} {z:.2f} {vesicle['id']}\n")
                    handle.write('{:.2f} {:.2f} {:.2f} {} marker\n'.format(*vesicle['centre'], vesicle['id']))
        points = self.run(ProtCryoSegImportMeshes, 'import user points', inputTomograms=self.tomograms,
                          filesPath=folder, filesPattern='{TS}_points.txt', boxSize=32)
        prot = self.run(ProtCryoSegModelWorkflow, 'directional model workflow', inputMeshes=points.meshes,
                        cropping=60.0, inPlane=1, numberOfThreads=2)
        for ts_id, table in read_coordinates(prot.coordinates).items():
            truth = self.truths[ts_id]
            for group in np.unique(table.group_ids):
                mine = table.group_ids == group
                vesicle = min(truth.vesicles, key=lambda v: np.linalg.norm(np.asarray(v['centre'])
                                                                           - table.xyz[mine].mean(axis=0)))
                normals, distance = vesicle_normals(vesicle, truth.voxel_size, table.xyz[mine])
                angles = np.degrees(np.arccos(np.clip(np.sum(normals * table.matrices[mine, 2, :3], 1), -1, 1)))
                print(f"  {ts_id} vesicle {vesicle['id']} ({vesicle['kind']}): {mine.sum()} cropping points, "
                      f"normal error median {np.median(angles):.1f}° max {angles.max():.1f}°, "
                      f"max distance to the membrane {np.abs(distance).max() * truth.voxel_size:.0f} Å")
        self.figures.append(plots.save(protocol_figure(prot), os.path.join(self.report_dir,
                                                                           '30_model_workflow.png')))
        return prot
    def picking_consensus(self):
        """Consensus (AND) of two pickings of the sample particles: the segmentation picker's output
        when an earlier step set ``self.picked_coordinates``, else a jittered ground-truth picking
        that misses 10 % of the particles; against a second jittered picking with false positives.
        The report gets the viewer's vote histogram and slices, and the recall of the consensus."""
        from scipy.spatial import cKDTree

        from .convert import read_coordinates
        from .protocols import ProtCryoSegPickingConsensus
        from .viewers.viewer_consensus import consensus_figure

        rng = np.random.default_rng(7)

        def perturbed_picking(found_fraction, false_positives, label):
            rows = {}
            for ts_id, truth in self.truths.items():
                centres = np.array([p['centre'] for p in truth.particles], float)
                kept = centres[rng.random(len(centres)) < found_fraction]
                extra = rng.uniform(10, np.array(truth.shape_xyz) - 10, (false_positives, 3))
                rows[ts_id] = (np.concatenate([kept + rng.normal(0, 1.0, kept.shape), extra]), None)
            return register_coordinates(self.project, self.tomograms, rows, SAMPLING, 32, label)

        first = getattr(self, 'picked_coordinates', None)
        if first is None:
            first = perturbed_picking(0.9, 0, 'picking 1 (jittered ground truth)')
        second = perturbed_picking(0.85, 5, 'picking 2 (jittered ground truth + false positives)')
        prot = self.run(ProtCryoSegPickingConsensus, 'picking consensus', inputCoordinates=[first, second],
                        consensusRadius=60.0, consensus=-1, outputDifference=True, differenceInput=2)
        for line in prot.summary():
            print(f"  {line}")
        for ts_id, table in read_coordinates(prot.consensusCoordinates).items():
            truth = np.array([p['centre'] for p in self.truths[ts_id].particles], float)
            distance, _ = cKDTree(truth).query(table.xyz)
            print(f"  {ts_id}: {np.sum(distance < 3)} of {len(table)} consensus picks within 3 voxels of a "
                  f"true particle ({len(truth)} particles)")
        self.figures.append(plots.save(consensus_figure(prot), os.path.join(self.report_dir,
                                                                            '40_picking_consensus.png')))
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
    demo.segdiam_pick()
    demo.extract_and_average()
    demo.model_workflow()
    demo.picking_consensus()
    print(f"\nProject: {demo.project.getPath()}")
    print(f"Report:  {demo.report_dir}")
    for figure in demo.figures:
        print(f"  {os.path.basename(figure)}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
