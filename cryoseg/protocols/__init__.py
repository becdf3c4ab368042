"""cryoseg protocols. Every protocol class is re-exported here: Scipion discovers them in this module."""
from .protocol_extract import ProtCryoSegExtract
from .protocol_apply_alignment import ProtCryoSegApplyAlignment
from .protocol_consensus import ProtCryoSegPickingConsensus
from .protocol_consensus import ProtCryoSegRemoveDuplicates
from .protocol_segdiam_pick import ProtCryoSegSegDiamPick
from .protocol_make_mask import ProtCryoSegMakeMask
from .protocol_import_meshes import ProtCryoSegImportMeshes
from .protocol_pick_points import ProtCryoSegPickPoints
from .protocol_model_workflow import ProtCryoSegModelWorkflow
from .protocol_evaluate_picking import ProtCryoSegEvaluatePicking
from .protocol_learned import ProtCryoSegTrainDetector
from .protocol_learned import ProtCryoSegDetectParticles
from .protocol_learned import ProtCryoSegTrainMaskNet
from .protocol_learned import ProtCryoSegPredictMask
from .protocol_export_picks import ProtCryoSegExportPicks
