"""Extraction and apply-alignment protocols in a real headless Scipion project, on phantoms whose
particle positions and membrane-protein normals are known."""
import os

import numpy as np
from pwem.emlib.image import ImageHandler
from tomo.constants import BOTTOM_LEFT_CORNER

from cryoseg.core.extract import fourier_crop, normalize
from cryoseg.core.mrcio import read_volume, write_volume
from cryoseg.core.orientation import matrix_from_normal, scipion_matrix
from cryoseg.demo import register_coordinates
from cryoseg.protocols import ProtCryoSegApplyAlignment, ProtCryoSegExtract
from cryoseg.tests.base import CryoSegProjectTest

FACE_OFFSET = 3  # px from a face


def bin2(volume):
    z, y, x = (n // 2 for n in volume.shape)
    return volume[:2 * z, :2 * y, :2 * x].reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5))


def slab_means(box, reach=3, depth=(3, 9)):
    """Mean density in slabs ``depth`` voxels from the centre along -z, +z, -y, +y, -x, +x, each
    limited to ``reach`` voxels around the axis."""
    c = box.shape[0] // 2
    near = slice(c - reach, c + reach + 1)
    below, above = slice(c - depth[1], c - depth[0] + 1), slice(c + depth[0], c + depth[1] + 1)
    return {'-z': box[below, near, near].mean(), '+z': box[above, near, near].mean(),
            '-y': box[near, below, near].mean(), '+y': box[near, above, near].mean(),
            '-x': box[near, near, below].mean(), '+x': box[near, near, above].mean()}


def membrane_below_margin(box):
    """How much denser the -z slab is than the densest other slab: positive when the membrane a
    protein stands on lies flat below it, as after a correct alignment."""
    means = slab_means(box)
    return means['-z'] - max(v for k, v in means.items() if k != '-z')


class TestExtractProtocols(CryoSegProjectTest):
    PHANTOM = dict(noise_std=0.3, texture_amplitude=0.1)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.volumes = {ts: read_volume(os.path.join(cls.dataDir, f'{ts}.mrc'))[0] for ts in cls.truths}
        bin2Dir = os.path.join(cls.proj.getPath(), 'phantoms_bin2')
        for tsId, volume in cls.volumes.items():
            write_volume(os.path.join(bin2Dir, f'{tsId}.mrc'), bin2(volume), 2 * cls.SAMPLING)
        cls.tomogramsBin2 = cls.importTomograms(bin2Dir, 2 * cls.SAMPLING)

        # particles at even voxel positions (exact at bin 2 too), plus one 3 px from each face of TS_01
        cls.particleRows = {}
        for tsId, truth in cls.truths.items():
            xyz = [2 * np.round(np.asarray(p['centre']) / 2) for p in truth.particles]
            if tsId == 'TS_01':
                size = np.asarray(truth.shape_xyz)
                centre = 2 * (size // 4)
                for axis in range(3):
                    for position in (FACE_OFFSET, size[axis] - 1 - FACE_OFFSET):
                        point = centre.copy()
                        point[axis] = position
                        xyz.append(point)
            cls.particleRows[tsId] = np.array(xyz, float)
        cls.particles = cls.registerCoordinates('phantom particles', {
            ts: (xyz, None) for ts, xyz in cls.particleRows.items()}, box=20)
        # membrane proteins at their exact (sub-voxel) centres, oriented by their outward normal
        cls.proteinRows = {ts: (np.array([m['centre'] for m in truth.membrane_proteins], float),
                                scipion_matrix(matrix_from_normal([m['normal'] for m in truth.membrane_proteins])))
                           for ts, truth in cls.truths.items()}
        cls.proteins = cls.registerCoordinates('phantom membrane proteins', cls.proteinRows, box=12)

        # sequential steps (no executor polling delay), except the oriented run: default parallel steps
        cls.extractSame = cls.runProtocol(ProtCryoSegExtract, objLabel='box 16, skip',
                                          inputCoordinates=cls.particles, boxSize=16,
                                          numberOfThreads=1)
        cls.extractBin2 = cls.runProtocol(ProtCryoSegExtract, objLabel='bin 2, down 2, pad',
                                          inputCoordinates=cls.particles, tomoSource=1,
                                          inputTomograms=cls.tomogramsBin2, boxSize=16, downFactor=2.0,
                                          borderMode=1, doInvert=True, doNormalize=True,
                                          numberOfThreads=1)
        cls.extractProteins = cls.runProtocol(ProtCryoSegExtract, objLabel='oriented proteins',
                                              inputCoordinates=cls.proteins, boxSize=24, doInvert=True)
        cls.applied = cls.runProtocol(ProtCryoSegApplyAlignment,
                                      inputSubtomograms=cls.extractProteins.subtomograms,
                                      numberOfThreads=1)

    @classmethod
    def registerCoordinates(cls, label, rowsByTsId, box):
        """A real SetOfCoordinates3D in the project, filled from the ground truth with cryoseg's bulk
        convert function: ``{tsId: (xyz, matrices or None)}``."""
        return register_coordinates(cls.proj, cls.tomograms, rowsByTsId, cls.SAMPLING, box, label)

    def subtomos(self, prot):
        return [s.clone() for s in prot.subtomograms.iterSubtomos()]

    # --------------------------------------------------------------------------------- extraction
    def test_boxes_are_the_exact_voxels_and_keep_their_coordinates(self):
        output = self.extractSame.subtomograms
        total = sum(len(xyz) for xyz in self.particleRows.values())
        self.assertSetSize(output, total - 6)
        self.assertEqual(output.getSamplingRate(), self.SAMPLING)
        self.assertEqual(output.getCoordinates3D().getObjId(), self.particles.getObjId())
        seen = set()
        for subtomo in self.subtomos(self.extractSame):
            coord = subtomo.getCoordinate3D()
            tsId = coord.getTomoId()
            self.assertEqual(subtomo.getVolName(), tsId)
            x, y, z = np.round(coord.getPosition(BOTTOM_LEFT_CORNER)).astype(int)
            row = coord.getGroupId() - 1  # the group id was set to the row number
            np.testing.assert_allclose((x, y, z), self.particleRows[tsId][row])
            data, _ = read_volume(subtomo.getFileName())
            np.testing.assert_array_equal(data, self.volumes[tsId][z - 8:z + 8, y - 8:y + 8, x - 8:x + 8])
            np.testing.assert_allclose(subtomo.getTransform().getMatrix(), coord.getMatrix())
            self.assertEqual(ImageHandler.getDimensions(subtomo)[:3], (16, 16, 16))
            seen.add((tsId, row))
        self.assertEqual(len(seen), total - 6)

    def test_particles_near_the_six_faces_are_skipped_and_reported(self):
        skipped = self.extractSame.getSkipped()
        nTruth = len(self.truths['TS_01'].particles)
        coords = {c.getObjId(): c.getGroupId() - 1 for c in self.particles.iterItems()
                  if c.getTomoId() == 'TS_01'}
        self.assertEqual(sorted(coords[i] for i in skipped['TS_01']), list(range(nTruth, nTruth + 6)))
        self.assertEqual(skipped.get('TS_02'), [])
        summary = '\n'.join(self.extractSame.summary())
        self.assertIn('TS_01: 6 particles skipped', summary)

    def test_other_tomograms_at_bin2_are_paired_by_tsid_rescaled_downsampled_and_padded(self):
        output = self.extractBin2.subtomograms
        self.assertSetSize(output, sum(len(xyz) for xyz in self.particleRows.values()))  # pad: none skipped
        self.assertEqual(output.getSamplingRate(), 4 * self.SAMPLING)  # bin 2 and downsampled by 2
        self.assertEqual(self.extractBin2.getSkipped(), {'TS_01': [], 'TS_02': []})
        checked = 0
        for subtomo in self.subtomos(self.extractBin2):
            coord = subtomo.getCoordinate3D()
            tsId, row = coord.getTomoId(), coord.getGroupId() - 1
            data, info = read_volume(subtomo.getFileName())
            self.assertEqual(data.shape, (8, 8, 8))
            self.assertAlmostEqual(info.voxel_size[0], 40.0, places=3)
            self.assertAlmostEqual(float(data.mean()), 0.0, places=4)
            self.assertAlmostEqual(float(data.std()), 1.0, places=4)
            x, y, z = self.particleRows[tsId][row].astype(int)
            volume = self.volumes[tsId]
            if 16 <= min(x, y, z) and x + 16 <= volume.shape[2] and y + 16 <= volume.shape[1] \
                    and z + 16 <= volume.shape[0]:
                # the bin-1 box of 32 around the pick, binned, downsampled, inverted and normalised
                expected = normalize(fourier_crop(-bin2(volume[z - 16:z + 16, y - 16:y + 16, x - 16:x + 16]), 8))
                np.testing.assert_allclose(data, expected, atol=1e-4)
                checked += 1
        self.assertGreater(checked, 30)

    def test_orientations_survive_with_the_sub_voxel_residual_in_the_shifts(self):
        subtomos = self.subtomos(self.extractProteins)
        self.assertEqual(len(subtomos), sum(len(xyz) for xyz, _ in self.proteinRows.values()))
        for subtomo in subtomos:
            coord = subtomo.getCoordinate3D()
            xyz, matrices = self.proteinRows[coord.getTomoId()]
            row = coord.getGroupId() - 1
            matrix = subtomo.getTransform().getMatrix()
            np.testing.assert_allclose(matrix[:3, :3], matrices[row][:3, :3], atol=1e-9)
            np.testing.assert_allclose(coord.getMatrix(), matrices[row], atol=1e-9)
            residual = xyz[row] - np.floor(xyz[row] + 0.5)
            np.testing.assert_allclose(matrix[:3, 3], -matrices[row][:3, :3] @ residual, atol=1e-6)

    # --------------------------------------------------------------------------------- apply alignment
    def test_every_item_is_aligned_with_its_own_transform_and_averaged(self):
        aligned = [s.clone() for s in self.applied.subtomograms.iterItems()]
        self.assertGreaterEqual(len(aligned), 20)
        margins = []
        for subtomo in aligned:
            np.testing.assert_allclose(subtomo.getTransform().getMatrix(), np.eye(4))
            margins.append(membrane_below_margin(read_volume(subtomo.getFileName())[0]))
        # the 10th and 20th items (which upstream pairs with the 1st and 2nd transforms) in particular
        self.assertGreater(margins[9], 0)
        self.assertGreater(margins[19], 0)
        self.assertGreaterEqual(np.mean(np.array(margins) > 0), 0.9)

        average, _ = read_volume(self.applied.average.getFileName())
        self.assertEqual(average.shape, (24, 24, 24))
        self.assertEqual(self.applied.average.getSamplingRate(), self.SAMPLING)
        unaligned = np.mean([read_volume(s.getFileName())[0] for s in self.subtomos(self.extractProteins)], axis=0)
        self.assertGreater(membrane_below_margin(average), 0.1)
        self.assertGreater(membrane_below_margin(average), 3 * membrane_below_margin(unaligned))

    # --------------------------------------------------------------------------------- viewer, wizard
    def test_viewer_shows_the_gallery_and_the_average_headless(self):
        from cryoseg.viewers.viewer_subtomograms import CryoSegSubtomogramViewer

        views = CryoSegSubtomogramViewer(project=self.proj)._visualize(self.applied)
        self.assertEqual(len(views), 2)
        gallery, average = (view.getFigure() for view in views)
        self.assertEqual(len(gallery.axes), 24)  # the first 24 of the 40 aligned proteins
        self.assertEqual(len(average.axes), 3)
        first = [s.clone() for s in self.applied.subtomograms.iterItems(limit=1)][0]
        volume = read_volume(first.getFileName())[0]
        np.testing.assert_array_equal(gallery.axes[0].images[0].get_array(), volume[12])
        for view in views:
            view.close()

    def test_box_size_wizard_rescales_the_coordinates_box(self):
        from cryoseg.wizards import CryoSegExtractBoxSizeWizard

        same = self.newProtocol(ProtCryoSegExtract, inputCoordinates=self.particles)
        self.assertEqual(CryoSegExtractBoxSizeWizard.boxSize(same), 20)
        other = self.newProtocol(ProtCryoSegExtract, inputCoordinates=self.particles, tomoSource=1,
                                 inputTomograms=self.tomogramsBin2)
        self.assertEqual(CryoSegExtractBoxSizeWizard.boxSize(other), 10)
        self.assertIsNone(CryoSegExtractBoxSizeWizard.boxSize(self.newProtocol(ProtCryoSegExtract)))


def test_figure_functions_draw_central_slices_headless():
    from cryoseg.viewers.viewer_subtomograms import average_figure, gallery_figure

    volumes = [np.random.default_rng(i).standard_normal((10, 10, 10)).astype(np.float32) for i in range(7)]
    fig = gallery_figure(volumes, columns=3)
    assert len(fig.axes) == 7
    np.testing.assert_array_equal(fig.axes[6].images[0].get_array(), volumes[6][5])
    fig = average_figure(volumes[0])
    assert [ax.get_title() for ax in fig.axes] == ['average xy', 'average xz', 'average yz']
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), volumes[0][:, 5])
