"""The test harness itself: phantoms imported through scipion-em-tomo's real import protocol, and
coordinates of several tomograms written and read back in bulk through cryoseg.convert."""
import numpy as np
import pytest
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.objects import SetOfCoordinates3D

from cryoseg.convert import append_coordinates, read_coordinates, tomograms_by_tsid
from cryoseg.tests.base import CryoSegProjectTest


class TestImportedPhantoms(CryoSegProjectTest):

    def test_import_gives_one_tomogram_per_phantom(self):
        self.assertSetSize(self.tomograms, 2)
        self.assertEqual(sorted(self.tomograms.getTSIds()), ['TS_01', 'TS_02'])
        self.assertAlmostEqual(self.tomograms.getSamplingRate(), self.SAMPLING)
        for tomo in self.tomograms.iterItems():
            self.assertEqual(tuple(tomo.getDim()), tuple(self.truths[tomo.getTsId()].shape_xyz))

    def test_coordinates_of_every_tomogram_round_trip(self):
        coords = SetOfCoordinates3D.create(self.getOutputPath(), suffix='roundtrip')
        coords.setPrecedents(self.tomograms)
        coords.setSamplingRate(self.SAMPLING)
        coords.setBoxSize(32)
        tomos = tomograms_by_tsid(self.tomograms)
        expected = {}
        for ts_id, tomo in tomos.items():
            xyz = np.array([p['centre'] for p in self.truths[ts_id].particles])
            append_coordinates(coords, tomo, xyz, group_ids=np.arange(len(xyz)) % 3)
            expected[ts_id] = xyz
        coords.write()
        tables = read_coordinates(coords)
        self.assertEqual(sorted(tables), ['TS_01', 'TS_02'])
        for ts_id, table in tables.items():
            order = np.argsort(table.obj_ids)
            np.testing.assert_allclose(table.xyz[order], expected[ts_id], atol=1e-6)
            np.testing.assert_array_equal(table.group_ids[order], np.arange(len(table)) % 3)
        first = next(iter(coords.iterCoordinates(volume=tomos['TS_02'])))
        self.assertEqual(first.getPosition(BOTTOM_LEFT_CORNER),
                         pytest.approx(tuple(expected['TS_02'][0])))
