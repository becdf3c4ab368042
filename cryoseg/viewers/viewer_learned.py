"""Viewers of the learned protocols (training loss curves) and of picking evaluation (P/R/F1)."""
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
    """The loss curves of a training run: whether the networks have converged."""
    _label = 'viewer training'
    _targets = [ProtCryoSegTrainDetector, ProtCryoSegTrainMaskNet]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _visualize(self, obj, **kwargs):
        model = getattr(obj, obj.OUTPUT_NAME, None)
        if model is None:
            return []
        return [Plotter(figure=loss_figure(read_loss_log(model.getLossLog()), f'{model.getKind()} training loss'))]


class CryoSegEvaluationViewer(Viewer):
    """Precision, recall and F1 of a picking per tomogram and overall, with the TP/FP/FN counts."""
    _label = 'viewer picking evaluation'
    _targets = [ProtCryoSegEvaluatePicking]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _visualize(self, obj, **kwargs):
        evaluation = obj.getEvaluation()
        return [Plotter(figure=evaluation_figure(evaluation))] if evaluation else []
