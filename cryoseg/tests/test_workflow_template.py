"""The shipped workflow template (cryoseg/workflows/cryoseg_demo.json) loads into a fresh Scipion project
with the expected protocols, labels, parameters and links, and its links resolve once a parent runs.
``make demo`` runs the whole workflow."""
import json
import os

import pytest
from pyworkflow.object import PointerList
from pyworkflow.tests import BaseTest, setupTestProject

from cryoseg.core.phantom import write_sample_data
from cryoseg.demo import TEMPLATE, fill_template, load_workflow

EXPECTED = [  # (label, class, {input: (label of the parent, output)})
    ('import sample tomograms', 'ProtImportTomograms', {}),
    ('make mask', 'ProtCryoSegMakeMask', {'inputTomograms': ('import sample tomograms', 'Tomograms')}),
    ('segdiam pick (masked)', 'ProtCryoSegSegDiamPick',
     {'inputTomograms': ('import sample tomograms', 'Tomograms'), 'inputMasks': ('make mask', 'tomoMasks')}),
    ('segdiam pick (whole tomogram, low-pass 120 Å)', 'ProtCryoSegSegDiamPick',
     {'inputTomograms': ('import sample tomograms', 'Tomograms')}),
    ('picking consensus', 'ProtCryoSegPickingConsensus',
     {'inputCoordinates': [('segdiam pick (masked)', 'coordinates'),
                           ('segdiam pick (whole tomogram, low-pass 120 Å)', 'coordinates')]}),
    ('import user points', 'ProtCryoSegImportMeshes', {'inputTomograms': ('import sample tomograms', 'Tomograms')}),
    ('pick points', 'ProtCryoSegPickPoints', {'inputTomograms': ('import sample tomograms', 'Tomograms'),
                                              'inputPoints': ('import user points', 'meshes')}),
    ('directional model workflow', 'ProtCryoSegModelWorkflow', {'inputMeshes': ('pick points', 'meshes')}),
    ('extract consensus particles', 'ProtCryoSegExtract',
     {'inputCoordinates': ('picking consensus', 'consensusCoordinates')}),
    ('extract membrane patches', 'ProtCryoSegExtract',
     {'inputCoordinates': ('directional model workflow', 'coordinates')}),
    ('apply alignment and average', 'ProtCryoSegApplyAlignment',
     {'inputSubtomograms': ('extract membrane patches', 'subtomograms')}),
]


def test_placeholders_must_all_be_filled():
    with open(TEMPLATE) as handle:
        text = handle.read()
    with pytest.raises(ValueError, match='USER_POINTS'):
        fill_template(text, {'SAMPLE_DATA': '/data'})
    filled = json.loads(fill_template(text, {'SAMPLE_DATA': '/data/"quoted"', 'USER_POINTS': '/points'}))
    assert [entry['filesPath'] for entry in filled if 'filesPath' in entry] == ['/data/"quoted"', '/points']
    assert '@' not in json.dumps(filled)


class TestWorkflowTemplate(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.dataDir = os.path.join(cls.proj.getPath(), 'sample_data')
        cls.pointsDir = os.path.join(cls.proj.getPath(), 'user_points')
        write_sample_data(cls.dataDir, count=1, seed=3)
        cls.protocols = load_workflow(cls.proj, {'SAMPLE_DATA': cls.dataDir, 'USER_POINTS': cls.pointsDir})

    def test_protocols_labels_links_and_parameters(self):
        self.assertEqual([(p.getObjLabel(), p.getClassName()) for p in self.protocols],
                         [(label, name) for label, name, _ in EXPECTED])
        byLabel = {p.getObjLabel(): p for p in self.protocols}
        # stored in the project: a reloaded project shows the same runs with their labels and comments
        stored = {p.getObjLabel(): p for p in self.proj.getRuns(refresh=True)}
        for label, _, links in EXPECTED:
            self.assertIn(label, stored)
            self.assertTrue(stored[label].getObjComment())
            prot = byLabel[label]
            for name, expected in links.items():
                attr = getattr(prot, name)
                pointers = list(attr) if isinstance(attr, PointerList) else [attr]
                expected = expected if isinstance(expected, list) else [expected]
                self.assertEqual([(p.getObjValue().getObjLabel(), p.getExtended()) for p in pointers], expected,
                                 f'{label}.{name}')
                for parentLabel, output in expected:  # the outputs the parents really declare
                    possible = getattr(byLabel[parentLabel], '_possibleOutputs', None)
                    if possible:
                        self.assertIn(output, possible)
        self.assertEqual(byLabel['import sample tomograms'].filesPath.get(), self.dataDir)
        self.assertEqual(byLabel['import user points'].filesPath.get(), self.pointsDir)
        self.assertEqual(byLabel['make mask'].threshold.get(), 1.0)
        for label, lowpass in (('segdiam pick (masked)', 90.0), ('segdiam pick (whole tomogram, low-pass 120 Å)', 120.0)):
            self.assertEqual(byLabel[label].foregroundFraction.get(), 0.10)
            self.assertEqual(byLabel[label].lowpass.get(), lowpass)
        self.assertTrue(byLabel['picking consensus'].outputDifference.get())
        self.assertEqual(byLabel['extract membrane patches'].boxSize.get(), 24)

    def test_every_template_parameter_exists_in_its_protocol(self):
        with open(TEMPLATE) as handle:
            entries = json.load(handle)
        for prot, entry in zip(self.protocols, entries):
            names = {name for name, _ in prot.iterDefinitionAttributes()}
            unknown = {k for k in entry if not k.startswith('object.') and not k.startswith('_')} - names
            self.assertFalse(unknown, f'{prot.getClassName()}: {unknown}')

    def test_links_resolve_once_the_import_has_run(self):
        imported, mask = self.protocols[0], self.protocols[1]
        self.launchProtocol(imported)
        tomograms = mask.inputTomograms.get()
        self.assertIsNotNone(tomograms)
        self.assertEqual(tomograms.getSize(), 1)
        self.assertEqual(tomograms.getFirstItem().getTsId(), 'TS_01')
        self.assertEqual(mask.validate(), [])
