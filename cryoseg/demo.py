"""The one-command demo: cryoseg's workflow template run in a real Scipion project on embedded sample data.

``make demo`` (or ``python -m cryoseg.demo``) generates phantom tomograms with ground truth and
click-like points on their vesicles, loads the workflow template ``cryoseg/workflows/cryoseg_demo.json``
into a new project (filling in the folders of those inputs), runs its protocols in order, and writes a
report: ``report/index.html`` with PNG figures of every step and the scores against the ground truth.
"""
import argparse
import html
import json
import os
import re
import sys
import time

import matplotlib
import numpy as np

matplotlib.use('Agg')

from pyworkflow.project import Manager  # noqa: E402

from . import plots  # noqa: E402
from .core.mrcio import read_volume  # noqa: E402
from .core.phantom import write_sample_data  # noqa: E402

PROJECT_NAME = 'cryoseg_demo'
SAMPLING = 10.0
TEMPLATE = os.path.join(os.path.dirname(__file__), 'workflows', 'cryoseg_demo.json')
PLACEHOLDER = re.compile(r'@([A-Z_]+)@')
MATCH_RADIUS = 50.0  # Å: a pick within this distance of a true particle centre finds it
PICKINGS = ('segdiam pick (masked)', 'segdiam pick (whole tomogram, low-pass 120 Å)', 'picking consensus')
# Learned detection: every particle of the training tomogram is annotated (all three classes, as a
# user marks the particles to pick), the detector is trained for the middle diameter; settings chosen
# on the training tomogram.
LEARNED_TARGET = 'particles (all classes)'
LEARNED_DIAMETER = 180.0  # Å, the middle class; the classes are 120, 180 and 260 Å
LEARNED_BINNING = 2
LEARNED_TRAINING = dict(completeAnnotation=True)  # the phantom's ground truth: every particle annotated
LEARNED_DETECTION = dict(scoreThreshold=-1.0)  # the threshold chosen in training


def false_positive_sources(truth, xyz, radius=MATCH_RADIUS):
    """``{object kind: count}`` of the detections at ``xyz`` (voxels of the unbinned phantom) farther
    than ``radius`` Å from every detector target: each is put on the nearest phantom object within
    ``radius`` Å of its surface (a particle, gold bead, membrane protein, vesicle membrane, filament,
    contamination; a particle here is one found off-centre or twice), else 'empty ice or noise'."""
    from .core.model_workflow import vesicle_normals

    size = truth.voxel_size
    points = [(p['centre'], p['diameter'] / 2, f"{p['diameter']:.0f} Å particle", True) for p in truth.particles]
    points += [(g['centre'], g['diameter'] / 2, 'gold bead', False) for g in truth.gold]
    points += [(m['centre'], 25.0, 'membrane protein', False) for m in truth.membrane_proteins]
    points += [(c['centre'], c['radius'], 'contamination', False) for c in truth.contamination]
    counts = {}
    for position in np.asarray(xyz, float).reshape(-1, 3):
        gaps = [(np.linalg.norm(position - np.asarray(centre)) * size - reach, name, target)
                for centre, reach, name, target in points]
        gaps += [(abs(float(vesicle_normals(v, size, position[None])[1][0])) * size, 'vesicle membrane', False)
                 for v in truth.vesicles]
        gaps += [(np.min(np.linalg.norm(np.asarray(f['path']) - position, axis=1)) * size - f['diameter'] / 2,
                  'filament', False) for f in truth.filaments]
        centres = [(np.linalg.norm(position - np.asarray(c)) * size, target) for c, _, _, target in points]
        if any(target and distance <= radius for distance, target in centres):
            continue  # a true positive
        gap, name, _ = min(gaps, key=lambda item: item[0]) if gaps else (np.inf, '', False)
        name = name if gap <= radius else 'empty ice or noise'
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def register_coordinates(project, tomograms, rows_by_tsid, sampling, box, label):
    """A SetOfCoordinates3D built from known positions, registered in ``project`` as the output of a
    (not run) coordinate-import protocol, so that later protocols can take it as input.
    ``rows_by_tsid``: ``{tsId: (xyz bottom-left-corner px, Scipion matrices or None)}``."""
    from pyworkflow.protocol import STATUS_FINISHED
    from tomo.protocols import ProtImportCoordinates3D

    from .convert import append_coordinates, tomograms_by_tsid

    prot = project.newProtocol(ProtImportCoordinates3D)
    label_protocol(project, prot, label)
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


def fill_template(text, values):
    """Workflow JSON text with every ``@NAME@`` placeholder replaced by ``values[NAME]``."""
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise ValueError(f"no value for the workflow placeholders {missing}")
    return PLACEHOLDER.sub(lambda match: json.dumps(str(values[match.group(1)]))[1:-1], text)


def load_workflow(project, values, template=TEMPLATE):
    """Creates (without running) the protocols of a workflow template in ``project``, placeholders
    filled with ``values``; returns them in the template's order, inputs linked as in the template."""
    with open(template) as handle:
        text = fill_template(handle.read(), values)
    entries = json.loads(text)
    protocols = list(project.loadProtocols(jsonStr=text).values())
    if len(protocols) != len(entries):
        missing = sorted({e['object.className'] for e in entries} - {p.getClassName() for p in protocols})
        raise RuntimeError(f"the workflow needs protocols that are not installed: {missing}")
    for prot, entry in zip(protocols, entries):
        # pyworkflow 3.11's Step.__init__ drops the objLabel/objComment that loadProtocols passes
        label_protocol(project, prot, entry.get('object.label'), entry.get('object.comment'))
    return protocols


def label_protocol(project, prot, label, comment=None):
    """Sets and saves a protocol's label (and comment) shown in the project window."""
    if label:
        prot.setObjLabel(label)
    if comment:
        prot.setObjComment(comment)
    project.saveProtocol(prot)


class Demo:
    """Runs protocols in one project and keeps what the report needs."""

    def __init__(self, project_name, tomogram_count, phantom=None):
        manager = Manager()
        if manager.hasProject(project_name):
            manager.deleteProject(project_name)
        self.project = manager.createProject(project_name)
        os.chdir(self.project.getPath())  # pyworkflow resolves run paths relative to the project
        self.data_dir = os.path.join(self.project.getPath(), 'sample_data')
        self.points_dir = os.path.join(self.project.getPath(), 'user_points')
        self.report_dir = os.path.join(self.project.getPath(), 'report')
        os.makedirs(self.report_dir, exist_ok=True)
        self.tomogram_count = tomogram_count
        self.phantom = phantom or {}  # overrides of the 'small' sample phantom
        self.figures = []
        self.captions = {}
        self.steps = {}  # label -> finished protocol, in run order
        self.run_seconds = {}
        self.scores = []  # (step, measure, value) rows of the report

    # ------------------------------------------------------------------------------ running
    def launch(self, prot):
        label = prot.getObjLabel()
        print(f"running {label} ...", flush=True)
        start = time.time()
        self.project.launchProtocol(prot, wait=True)
        if not prot.isFinished():
            raise RuntimeError(f"{label} did not finish ({prot.getStatus()}); see its log in "
                               f"{prot.getLogPaths()[0]}")
        self.run_seconds[label] = time.time() - start
        self.steps[label] = prot
        return prot

    def run(self, protocol_class, label, **params):
        """Creates and runs one protocol outside the template (e.g. on ``self.tomograms``)."""
        prot = self.project.newProtocol(protocol_class, **params)
        label_protocol(self.project, prot, label)
        return self.launch(prot)

    def write_inputs(self):
        """The sample tomograms with their ground truth, and click-like user points on their vesicles
        (30 per vesicle from the ground truth, plus a marker at the centre), one file per tomogram."""
        from .core.model_workflow import simulate_clicks

        self.truths = write_sample_data(self.data_dir, count=self.tomogram_count, seed=1,
                                        **{'missing_wedge': 60.0, **self.phantom})
        os.makedirs(self.points_dir, exist_ok=True)
        for ts_id, truth in self.truths.items():
            with open(os.path.join(self.points_dir, f'{ts_id}_points.txt'), 'w') as handle:
                for vesicle in truth.vesicles:
                    for x, y, z in simulate_clicks(vesicle, truth.voxel_size, count=30, seed=vesicle['id']):
                        handle.write(f"{x:.2f} {y:.2f} {z:.2f} {vesicle['id']}\n")
                    handle.write('{:.2f} {:.2f} {:.2f} {} marker\n'.format(*vesicle['centre'], vesicle['id']))
        return {'SAMPLE_DATA': self.data_dir, 'USER_POINTS': self.points_dir}

    def run_workflow(self, template=TEMPLATE, threads=None):
        """Loads the template with the sample inputs and runs its protocols in order. ``threads``
        overrides the template's thread counts (1 runs the steps serially, which avoids the parallel
        executor's polling pauses on tiny data)."""
        for prot in load_workflow(self.project, self.write_inputs(), template):
            if threads and prot.hasAttribute('numberOfThreads'):
                prot.numberOfThreads.set(threads)
            self.launch(prot)
        self.tomograms = self.steps['import sample tomograms'].Tomograms

    # ------------------------------------------------------------------------------- report
    def figure(self, fig, name, caption):
        path = plots.save(fig, os.path.join(self.report_dir, name))
        self.figures.append(path)
        self.captions[path] = caption
        return path

    def picking_score(self, label, coordinates):
        """Precision and recall of a coordinate set against the ground-truth particle centres."""
        from .convert import read_coordinates
        from .core.evaluation import score_tomograms

        predicted = {ts_id: table.xyz * coordinates.getSamplingRate()
                     for ts_id, table in read_coordinates(coordinates).items()}
        reference = {ts_id: np.array([p['centre'] for p in truth.particles], float) * truth.voxel_size
                     for ts_id, truth in self.truths.items()}
        _, total = score_tomograms(predicted, reference, MATCH_RADIUS)
        print(f"  {label}: {total.tp + total.fp} picks, precision {total.precision:.2f}, recall "
              f"{total.recall:.2f} (within {MATCH_RADIUS:.0f} Å of a true particle)")
        self.scores += [(label, 'picks', total.tp + total.fp), (label, 'true particles found', total.tp),
                        (label, f'precision (within {MATCH_RADIUS:.0f} Å)', f'{total.precision:.2f}'),
                        (label, f'recall (within {MATCH_RADIUS:.0f} Å)', f'{total.recall:.2f}'),
                        (label, 'F1', f'{total.f1:.2f}')]
        return total

    def report_ground_truth(self):
        """Central xy slice of each tomogram with its ground-truth particles circled."""
        fig, axes = plots.plt.subplots(1, len(self.truths), figsize=(5 * len(self.truths), 5))
        for ax, (ts_id, truth) in zip(np.atleast_1d(axes), self.truths.items()):
            volume, _ = read_volume(os.path.join(self.data_dir, f'{ts_id}.mrc'))
            z = volume.shape[0] // 2
            near = [p['centre'][:2] for p in truth.particles if abs(p['centre'][2] - z) < p['diameter'] / 20]
            plots.plot_slice_with_points(ax, plots.orthogonal_slices(volume, (z, 0, 0))[0], near,
                                         title=f'{ts_id}: particles crossing z={z} (ground truth)')
        self.figure(fig, '01_ground_truth.png', 'Sample tomograms: central slices with the ground-truth '
                                                'particles crossing them.')

    def report_masks(self):
        from .viewers.viewer_make_mask import mask_figure

        self.figure(mask_figure(self.steps['make mask']), '02_make_mask.png',
                    'make mask: central slices with the mask outline and the kept fraction per tomogram.')

    def report_pickings(self):
        """Each segdiam picking's viewer figure (diameter histogram, slices with picks), the
        consensus viewer figure (votes), and the precision/recall of all three against the ground truth."""
        from .viewers.viewer_consensus import consensus_figure
        from .viewers.viewer_segdiam import protocol_figure

        for index, label in enumerate(PICKINGS[:2]):
            prot = self.steps[label]
            self.figure(protocol_figure(prot), f'1{index}_segdiam_pick_{index + 1}.png',
                        f'{label}: diameter histogram with the accepted clusters, box and mask diameters; '
                        f'slices with the picks drawn at their diameter.')
        consensus = self.steps[PICKINGS[2]]
        self.figure(consensus_figure(consensus), '12_picking_consensus.png',
                    'picking consensus: votes of the matched particles and the kept picks coloured by votes.')
        self.picking_scores = {label: self.picking_score(label, self.steps[label].coordinates)
                               for label in PICKINGS[:2]}
        self.picking_scores[PICKINGS[2]] = self.picking_score(PICKINGS[2], consensus.consensusCoordinates)

    def report_model_workflow(self):
        """Viewer figure of the cropping points with their normals, and the angle between each
        normal and the true outward membrane normal."""
        from .convert import read_coordinates
        from .core.model_workflow import vesicle_normals
        from .viewers.viewer_model_workflow import protocol_figure

        prot = self.steps['directional model workflow']
        errors, distances = [], []
        for ts_id, table in read_coordinates(prot.coordinates).items():
            truth = self.truths[ts_id]
            for group in np.unique(table.group_ids):
                mine = table.group_ids == group
                vesicle = min(truth.vesicles, key=lambda v: np.linalg.norm(np.asarray(v['centre'])
                                                                           - table.xyz[mine].mean(axis=0)))
                normals, distance = vesicle_normals(vesicle, truth.voxel_size, table.xyz[mine])
                errors.append(np.degrees(np.arccos(np.clip(np.sum(normals * table.matrices[mine, 2, :3], 1),
                                                           -1, 1))))
                distances.append(np.abs(distance) * truth.voxel_size)
        self.normal_errors = np.concatenate(errors)
        distances = np.concatenate(distances)
        label = 'directional model workflow'
        print(f"  {label}: {len(self.normal_errors)} cropping points, normal error median "
              f"{np.median(self.normal_errors):.1f}° max {self.normal_errors.max():.1f}°, distance to the "
              f"membrane max {distances.max():.0f} Å")
        self.scores += [(label, 'cropping points', len(self.normal_errors)),
                        (label, 'normal angle error, median (°)', f'{np.median(self.normal_errors):.1f}'),
                        (label, 'normal angle error, 95th percentile (°)',
                         f'{np.percentile(self.normal_errors, 95):.1f}'),
                        (label, 'distance to the true membrane, max (Å)', f'{distances.max():.0f}')]
        self.figure(protocol_figure(prot), '20_model_workflow.png',
                    'directional model workflow: cropping points with their normals on slices and in 3-D.')

    def report_subtomograms(self):
        from .viewers.viewer_subtomograms import average_figure, gallery_figure

        extracted = self.steps['extract consensus particles'].subtomograms
        gallery = [(s.getObjId(), read_volume(s.getFileName())[0]) for s in extracted.iterItems(limit=24)]
        self.figure(gallery_figure([v for _, v in gallery], [f'id {i}' for i, _ in gallery]),
                    '30_consensus_particles.png',
                    f'extract consensus particles: central slices of the first {len(gallery)} of '
                    f'{extracted.getSize()} subtomograms (contrast inverted).')
        aligned = self.steps['apply alignment and average']
        count = aligned.subtomograms.getSize()
        self.figure(average_figure(read_volume(aligned.average.getFileName())[0], f'average of {count}'),
                    '31_membrane_patch_average.png',
                    f'apply alignment and average: the {count} membrane patches rotated to their normals '
                    f'(z) and averaged; the membrane shows as a plane normal to z.')
        self.scores += [('extract consensus particles', 'subtomograms', extracted.getSize()),
                        ('apply alignment and average', 'membrane patches averaged', count)]

    def learned_detection(self):
        """A small particle detector trained on TS_01 with its particles annotated (ground truth,
        tomograms binned to 20 Å/px so the CPU run stays short), applied to every tomogram and scored
        by the evaluation protocol against the same kind of particles; the false positives are traced
        to the phantom object they sit on. Report: validation curves and the P/R/F1 figure."""
        from tomo.protocols import ProtImportTomograms

        from .core.mrcio import write_volume
        from .protocols import ProtCryoSegDetectParticles, ProtCryoSegEvaluatePicking, ProtCryoSegTrainDetector
        from .viewers.viewer_learned import evaluation_figure, validation_figure
        from .learn import missing_ml_message, read_loss_log

        if missing_ml_message():
            print(f"  learned detection skipped: {missing_ml_message()}")
            return
        binned_sampling = LEARNED_BINNING * SAMPLING
        binned_dir = os.path.join(self.project.getPath(), f'sample_data_bin{LEARNED_BINNING}')
        os.makedirs(binned_dir, exist_ok=True)
        for ts_id in self.truths:
            volume, _ = read_volume(os.path.join(self.data_dir, f'{ts_id}.mrc'))
            z, y, x = (n // LEARNED_BINNING for n in volume.shape)
            b = LEARNED_BINNING
            binned = volume[:b * z, :b * y, :b * x].reshape(z, b, y, b, x, b).mean((1, 3, 5))
            write_volume(os.path.join(binned_dir, f'{ts_id}.mrc'), binned, binned_sampling)
        binned = self.run(ProtImportTomograms, f'import tomograms binned by {LEARNED_BINNING}', filesPath=binned_dir,
                          filesPattern='{TS}.mrc', samplingRate=binned_sampling).Tomograms
        centres = {ts_id: np.array([p['centre'] for p in truth.particles]) / LEARNED_BINNING
                   for ts_id, truth in self.truths.items()}
        first = sorted(centres)[0]
        box = int(round(LEARNED_DIAMETER / binned_sampling))
        annotated = register_coordinates(self.project, binned, {first: (centres[first], None)}, binned_sampling,
                                         box, f'annotated {LEARNED_TARGET} ({first})')
        reference = register_coordinates(self.project, binned, {ts: (xyz, None) for ts, xyz in centres.items()},
                                         binned_sampling, box, f'true {LEARNED_TARGET}')
        train = self.run(ProtCryoSegTrainDetector, 'train particle detector', inputCoordinates=annotated,
                         diameter=LEARNED_DIAMETER, numberOfThreads=2, **LEARNED_TRAINING)
        detect = self.run(ProtCryoSegDetectParticles, 'detect particles', inputTomograms=binned,
                          inputModel=train.model, **LEARNED_DETECTION)
        evaluate = self.run(ProtCryoSegEvaluatePicking, 'evaluate learned picking', inputCoordinates=detect.coordinates,
                            referenceCoordinates=reference, radius=MATCH_RADIUS)
        evaluation = evaluate.getEvaluation()
        self.figure(validation_figure(read_loss_log(train.model.getLossLog())), '50_detector_validation.png',
                    f'train particle detector: training loss and held-back scores per fold on {first}.')
        self.figure(evaluation_figure(evaluation), '51_learned_picking_scores.png',
                    f'evaluate learned picking: precision, recall and F1 of the detector against the '
                    f'{LEARNED_TARGET} ({first} was the training tomogram, the others are unseen).')
        from .convert import read_coordinates
        detected = read_coordinates(detect.coordinates)
        for ts_id, score in evaluation['tomograms'].items():
            role = 'training' if ts_id == first else 'unseen'
            xyz = detected[ts_id].xyz * LEARNED_BINNING if ts_id in detected else np.zeros((0, 3))
            sources = false_positive_sources(self.truths[ts_id], xyz)
            where = ', '.join(f'{count} {name}' for name, count in sources.items()) or 'none'
            print(f"  learned detection {ts_id} ({role}): precision {score['precision']:.2f}, recall "
                  f"{score['recall']:.2f}, F1 {score['f1']:.2f}; false positives on: {where}")
            self.scores += [('evaluate learned picking', f'F1 on {ts_id} ({role})', f"{score['f1']:.2f}"),
                            ('evaluate learned picking', f'precision / recall on {ts_id}',
                             f"{score['precision']:.2f} / {score['recall']:.2f}"),
                            ('evaluate learned picking', f'false positives on {ts_id} lie on', where)]

    def cellular_tomogram(self):
        """The 'cell' phantom (a crowded lamella like EMPIAR-11658 tomogram 9: 270 Å ribosomes at
        31.36 Å/px, touching and lining a membrane) through make mask and segdiam pick with their
        default settings, scored as on the real tomogram: share of the particles inside the mask,
        masked fraction, picks matched within half a ribosome."""
        from tomo.protocols import ProtImportTomograms

        from .convert import read_coordinates
        from .core.evaluation import score_points
        from .protocols import ProtCryoSegMakeMask, ProtCryoSegSegDiamPick
        from .viewers.viewer_make_mask import mask_figure

        cell_dir = os.path.join(self.project.getPath(), 'sample_data_cell')
        truth = write_sample_data(cell_dir, count=1, size='cell', seed=1)['TS_01']
        tomograms = self.run(ProtImportTomograms, 'import cell phantom', filesPath=cell_dir, filesPattern='{TS}.mrc',
                             samplingRate=truth.voxel_size).Tomograms
        centres = np.array([p['centre'] for p in truth.particles])
        diameter = truth.particles[0]['diameter']
        particles = register_coordinates(self.project, tomograms, {'TS_01': (centres, None)}, truth.voxel_size,
                                         int(round(diameter / truth.voxel_size)), 'true cell-phantom ribosomes')
        mask = self.run(ProtCryoSegMakeMask, 'make mask (cell phantom)', inputTomograms=tomograms,
                        inputCoordinates=particles)
        stats = mask.getMaskStats()['TS_01']
        pick = self.run(ProtCryoSegSegDiamPick, 'segdiam pick (cell phantom)', inputTomograms=tomograms)
        label, radius = 'cell phantom (defaults)', diameter / 2
        picked = getattr(pick, ProtCryoSegSegDiamPick.OUTPUT_NAME, None)
        table = read_coordinates(picked).get('TS_01') if picked is not None else None
        xyz = table.xyz * picked.getSamplingRate() if table is not None else np.zeros((0, 3))
        score = score_points(xyz, centres * truth.voxel_size, radius)
        print(f"  {label}: mask keeps {stats['inside']}/{stats['total']} ribosomes in {stats['fraction']:.0%} of "
              f"the volume; segdiam pick {len(xyz)} picks, recall {score.recall:.2f}, precision {score.precision:.2f}")
        self.scores += [(label, 'ribosomes inside the mask', f"{stats['inside']} of {stats['total']}"),
                        (label, 'masked volume fraction', f"{stats['fraction']:.2f}"),
                        (label, 'segdiam picks', len(xyz)),
                        (label, f'segdiam recall / precision (within {radius:.0f} Å)',
                         f'{score.recall:.2f} / {score.precision:.2f}')]
        self.figure(mask_figure(mask), '60_cell_phantom_mask.png',
                    "make mask on the cell phantom ('cell' preset: 270 Å ribosomes at 31.36 Å/px, crowded, "
                    "lining an ER-like cisterna, 8-bit): central slices with the mask outline.")

    def report_scores(self):
        """Bars of precision, recall and F1 of each picking; histogram of the normal angle errors."""
        fig, (bars, hist) = plots.plt.subplots(1, 2, figsize=(11, 4))
        measures = ('precision', 'recall', 'f1')
        for index, measure in enumerate(measures):
            values = [getattr(score, measure) for score in self.picking_scores.values()]
            bars.bar(np.arange(len(values)) + 0.27 * (index - 1), values, width=0.27, label=measure)
        bars.set_xticks(range(len(self.picking_scores)))
        bars.set_xticklabels([label.replace(' (', '\n(') for label in self.picking_scores], fontsize=8)
        bars.set_ylim(0, 1)
        bars.legend(fontsize=8)
        bars.set_title(f'Pickings against the ground truth (match within {MATCH_RADIUS:.0f} Å)', fontsize=9)
        hist.hist(self.normal_errors, bins=np.arange(0, max(30, self.normal_errors.max()) + 2, 2))
        hist.set_xlabel('angle to the true membrane normal (°)')
        hist.set_ylabel('cropping points')
        hist.set_title('Directional model workflow: normal errors', fontsize=9)
        self.figure(fig, '40_scores.png', 'Scores against the phantom\'s ground truth.')

    def write_html(self):
        """``report/index.html``: the steps with their summaries, the scores and every figure."""
        def table(header, rows):
            cells = ''.join(f'<th>{html.escape(str(h))}</th>' for h in header)
            body = ''.join('<tr>' + ''.join(f'<td>{c}</td>' for c in row) + '</tr>' for row in rows)
            return f'<table><tr>{cells}</tr>{body}</table>'

        def summary(prot):  # pyworkflow appends the comment to the summary: it has its own column
            lines = prot.summary()
            lines = lines[:lines.index('*COMMENTS:* ')] if '*COMMENTS:* ' in lines else lines
            # drop pyworkflow's text markup: [[link][text]] and *emphasis*
            lines = [re.sub(r'\[\[[^]]*\]\[([^]]*)\]\]', r'\1', line).replace('*', '') for line in lines]
            return '<br>'.join(html.escape(line) for line in lines if line.strip())

        steps = [(index + 1, f'<b>{html.escape(label)}</b><br><i>{html.escape(prot.getObjComment() or "")}</i>',
                  prot.getClassName(), f'{self.run_seconds[label]:.0f} s', summary(prot))
                 for index, (label, prot) in enumerate(self.steps.items())]
        figures = ''.join(f'<figure><img src="{os.path.basename(path)}"><figcaption>'
                          f'{html.escape(self.captions.get(path, os.path.basename(path)))}</figcaption></figure>'
                          for path in self.figures)
        page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>cryoseg demo</title><style>'
                'body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;'
                'margin-bottom:2em}td,th{border:1px solid #bbb;padding:4px 8px;text-align:left;vertical-align:top;'
                'font-size:90%;white-space:pre-wrap}img{max-width:100%}figure{margin:0 0 2em 0}</style></head><body>'
                f'<h1>cryoseg demo</h1><p>Scipion project <code>{html.escape(self.project.getPath())}</code>, '
                f'built from the workflow template <code>{html.escape(TEMPLATE)}</code> on '
                f'{len(self.truths)} phantom tomograms with known ground truth.</p>'
                '<h2>Steps</h2>' + table(('#', 'step', 'protocol', 'run time', 'summary'), steps) +
                '<h2>Scores against the ground truth</h2>' +
                table(('step', 'measure', 'value'), [tuple(html.escape(str(c)) for c in row) for row in self.scores]) +
                '<h2>Figures</h2>' + figures + '</body></html>')
        path = os.path.join(self.report_dir, 'index.html')
        with open(path, 'w') as handle:
            handle.write(page)
        return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--project', default=PROJECT_NAME, help='project name (replaced if it exists)')
    parser.add_argument('--tomograms', type=int, default=2, help='number of sample tomograms')
    args = parser.parse_args(argv)

    demo = Demo(args.project, args.tomograms)
    demo.run_workflow()
    demo.report_ground_truth()
    demo.report_masks()
    demo.report_pickings()
    demo.report_model_workflow()
    demo.report_subtomograms()
    demo.learned_detection()
    demo.cellular_tomogram()
    demo.report_scores()
    report = demo.write_html()
    print(f"\nProject: {demo.project.getPath()}")
    print(f"Report:  {report}")
    for figure in demo.figures:
        print(f"  {os.path.basename(figure)}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
