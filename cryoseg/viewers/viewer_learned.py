"""Viewers of the learned protocols (a detector's validation curves, a mask network's loss curves) and of
picking evaluation (P/R/F1)."""
import matplotlib.pyplot as plt
import numpy as np
from pyworkflow.gui.plotter import Plotter
from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, Viewer

from ..learn import read_loss_log
from ..protocols.protocol_evaluate_picking import TABLE_HEADER, ProtCryoSegEvaluatePicking, scoreRows
from ..protocols.protocol_learned import ProtCryoSegTrainDetector, ProtCryoSegTrainMaskNet


def loss_figure(log, title='training loss'):
    """Loss per iteration of each network (raw and running mean), log-scaled."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    iterations = log['iteration']
    for name, values in log.items():
        if name == 'iteration':
            continue
        window = max(1, len(values) // 20)
        smooth = np.convolve(values, np.ones(window) / window, mode='valid')
        line, = ax.plot(iterations, values, alpha=0.3, lw=0.8)
        ax.plot(iterations[window - 1:], smooth, color=line.get_color(), lw=1.6,
                label=f"{name.replace('_loss', '')} (last {values[-1]:.4f})")
    ax.set_yscale('log')
    ax.set_xlabel('iteration')
    ax.set_ylabel('loss')
    ax.set_title(title)
    ax.legend()
    return fig


VALIDATION_PANELS = (('loss', 'training loss'), ('val_ap', 'held-back average precision'),
                     ('val_recall', 'held-back recall (score ≥ 0.5)'),
                     ('val_precision', 'held-back precision (score ≥ 0.5)'), ('val_f1', 'held-back F1 (score ≥ 0.5)'))


def validation_figure(log, title='detector validation'):
    """A detector's validation log (:data:`cryoseg.learn.detector.LOG_COLUMNS`): per fold (one colour
    each), the training loss and the held-back scores against the iteration; a ring marks the kept
    iteration (best held-back average precision). Precision counts unannotated particles as false,
    so with a partial annotation it is a lower bound."""
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.5), sharex=True)
    folds = log['fold'].astype(int)
    for fold in np.unique(folds):
        rows = folds == fold
        iterations = log['iteration'][rows]
        best = int(np.argmax(log['val_ap'][rows]))
        for ax, (column, label) in zip(axes.flat, VALIDATION_PANELS):
            values = log[column][rows]
            line, = ax.plot(iterations, values, marker='.', lw=1.2, label=f'fold {fold + 1}')
            ax.plot(iterations[best], values[best], 'o', mfc='none', ms=9, color=line.get_color())
            ax.set_title(label, fontsize=10)
    axes.flat[0].set_yscale('log')
    for ax in axes.flat[1:len(VALIDATION_PANELS)]:
        ax.set_ylim(-0.02, 1.02)
    for ax in axes[-1]:
        ax.set_xlabel('iteration')
    legend = axes.flat[-1]
    legend.axis('off')
    legend.legend(*axes.flat[0].get_legend_handles_labels(), loc='center', title='ring: kept iteration')
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def evaluation_figure(evaluation):
    """Bars of precision, recall and F1 per tomogram and overall, with the TP/FP/FN table below."""
    rows = scoreRows(evaluation)
    fig, (ax, table_ax) = plt.subplots(2, 1, figsize=(7, 4.5 + 0.25 * len(rows)),
                                       gridspec_kw=dict(height_ratios=[3, 1 + 0.2 * len(rows)]))
    names = [row[0] for row in rows]
    positions = np.arange(len(rows))
    for offset, (column, label) in zip((-0.27, 0, 0.27), ((4, 'precision'), (5, 'recall'), (6, 'F1'))):
        ax.bar(positions + offset, [float(row[column]) for row in rows], width=0.27, label=label)
    ax.set_xticks(positions, names)
    ax.set_ylim(0, 1.25)  # headroom for the legend above bars that reach 1
    ax.legend(ncol=3, loc='upper center')
    ax.set_title(f"picking scores (matching radius {evaluation.get('radius', 0):.1f} Å)")
    table_ax.axis('off')
    table_ax.table(cellText=[[str(v) for v in row] for row in rows], colLabels=TABLE_HEADER, loc='center')
    return fig


class CryoSegTrainingViewer(Viewer):
    """A training run: a detector's held-back scores per fold (whether it learned, where each fold
    stopped), a mask network's loss curves (whether it has converged)."""
    _label = 'viewer training'
    _targets = [ProtCryoSegTrainDetector, ProtCryoSegTrainMaskNet]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _visualize(self, obj, **kwargs):
        model = getattr(obj, obj.OUTPUT_NAME, None)
        if model is None:
            return []
        log = read_loss_log(model.getLossLog())
        if model.getKind() == model.DETECTOR:
            return [Plotter(figure=validation_figure(log))]
        return [Plotter(figure=loss_figure(log, f'{model.getKind()} training loss'))]


class CryoSegEvaluationViewer(Viewer):
    """Precision, recall and F1 of a picking per tomogram and overall, with the TP/FP/FN counts."""
    _label = 'viewer picking evaluation'
    _targets = [ProtCryoSegEvaluatePicking]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _visualize(self, obj, **kwargs):
        evaluation = obj.getEvaluation()
        return [Plotter(figure=evaluation_figure(evaluation))] if evaluation else []
