"""cryoseg viewers. Every viewer class is re-exported here: Scipion discovers them in this module."""
from .viewer_subtomograms import CryoSegSubtomogramViewer
from .viewer_make_mask import CryoSegMakeMaskViewer
from .viewer_consensus import CryoSegConsensusViewer
from .viewer_segdiam import CryoSegSegDiamViewer
from .viewer_model_workflow import CryoSegModelWorkflowViewer
from .viewer_learned import CryoSegTrainingViewer
from .viewer_learned import CryoSegEvaluationViewer
