"""Shared machinery of cryoseg protocols.

:class:`ProtCryoSegBase` (every cryoseg protocol): inputs without a pixel size are refused in the form,
and a :class:`CryoSegInputError` raised by a step fails the run with its message only (a user mistake,
not a defect: no traceback).

:class:`ProtCryoSegPerTomogram`: one independent chain of steps per tomogram. Subclasses implement
``processTomogram(tsId)`` (the work; files go under ``self._getExtraPath()``) and
``registerTomogram(tsId)`` (append the results to the outputs with :meth:`_appendToOutput`). Each
tomogram runs in its own step chain, in parallel with the form's threads; the close step waits for
all of them (scipion.md §5). A tomogram whose processing raises is recorded with its message and
skipped, the others go on; the run fails only when every tomogram failed.
"""
import functools
import json
import logging
import traceback

from pwem.protocols import EMProtocol
from pyworkflow.exceptions import PyworkflowException
from pyworkflow.object import Set, String
from pyworkflow.protocol import STEPS_PARALLEL
from pyworkflow.utils.retry_streaming import retry_on_sqlite_lock
from tomo.objects import SetOfTomoMasks
from tomo.protocols import ProtTomoBase

from .. import convert
from ..core.errors import CryoSegInputError
from ..core.progress import Progress

logger = logging.getLogger(__name__)


def _failingCleanlyOnInputErrors(step):
    """``step`` with a CryoSegInputError turned into the exception pyworkflow reports without a
    traceback; the name is kept, so continuing a run still recognises its finished steps."""
    @functools.wraps(step)
    def run(*args):
        try:
            return step(*args)
        except CryoSegInputError as err:
            raise PyworkflowException(str(err)) from None
    return run


class ProtCryoSegBase(EMProtocol, ProtTomoBase):
    """Base class (not a protocol users see) of every cryoseg protocol."""
    _label = None  # abstract: not listed in the GUI

    def _insertFunctionStep(self, func, *funcArgs, **kwargs):
        if isinstance(func, str):
            func = getattr(self, func)
        return super()._insertFunctionStep(_failingCleanlyOnInputErrors(func), *funcArgs, **kwargs)

    def validate(self):
        return super().validate() + self._samplingErrors()

    def _samplingErrors(self):
        """Inputs whose pixel size is set but not positive (e.g. tomograms imported with 0 Å/px)."""
        errors = []
        for name, pointer in self.iterInputAttributes():
            sampling = getattr(pointer.get(), 'getSamplingRate', lambda: None)()
            if sampling is not None and not sampling > 0:
                label = self.getParam(name).label.get()
                errors.append(f'*{label}* have a pixel size of {sampling} Å/px: import them again with '
                              'their real pixel size (sampling rate).')
        return errors


class ProtCryoSegPerTomogram(ProtCryoSegBase):
    """Base class (not a protocol users see) for per-tomogram parallel processing."""
    _label = None
    stepsExecutionMode = STEPS_PARALLEL

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.failedTomograms = String('{}')

    # ----------------------------------------------------------------- to implement
    def _tsIdsToProcess(self):
        """tsIds to process, in order. Default: those of ``self.inputTomograms``."""
        return [tomo.getTsId() for tomo in self.inputTomograms.get().iterItems()]

    def processTomogram(self, tsId):
        raise NotImplementedError

    def registerTomogram(self, tsId):
        raise NotImplementedError

    def _sourceOfOutputs(self):
        """The input pointer every output derives from."""
        return self.inputTomograms

    # ----------------------------------------------------------------- steps
    def _insertAllSteps(self):
        outputSteps = []
        for tsId in self._tsIdsToProcess():
            processId = self._insertFunctionStep(self.processTomogramStep, tsId,
                                                 prerequisites=[], needsGPU=False)
            outputSteps.append(self._insertFunctionStep(self.registerTomogramStep, tsId,
                                                        prerequisites=[processId], needsGPU=False))
        self._insertFunctionStep(self.closeOutputStep, prerequisites=outputSteps, needsGPU=False)

    def processTomogramStep(self, tsId):
        with self._lock:  # the input set's database is shared by the step threads
            tsIds = self._tsIdsToProcess()
            if getattr(self, '_tomogramsDone', None) is None:
                self._tomogramsDone = Progress('tomograms processed in this run', len(tsIds), self.info, step=0)
        self.info(f"{tsId}: tomogram {tsIds.index(tsId) + 1} of {len(tsIds)}")
        try:
            self.processTomogram(tsId)
        except CryoSegInputError as err:
            self._recordFailure(tsId, str(err))
        except Exception as err:  # one bad tomogram must not stop the others; keep the trace in the log
            logger.error(traceback.format_exc())
            self._recordFailure(tsId, f"{type(err).__name__}: {err}")
        with self._lock:
            self._tomogramsDone.advance()

    def registerTomogramStep(self, tsId):
        if tsId not in self.getFailures():
            self.registerTomogram(tsId)

    def closeOutputStep(self):
        failures = self.getFailures()
        if failures and len(failures) == len(self._tsIdsToProcess()):
            raise CryoSegInputError('every tomogram failed:\n' + '\n'.join(
                f'{tsId}: {message}' for tsId, message in failures.items()))
        self._closeOutputSet()

    # ----------------------------------------------------------------- helpers
    def getFailures(self):
        """``{tsId: message}`` of the tomograms that could not be processed."""
        return json.loads(self.failedTomograms.get() or '{}')

    def _recordFailure(self, tsId, message):
        logger.error(f"{tsId}: {message}")
        with self._lock:
            failures = self.getFailures()
            failures[tsId] = message
            self.failedTomograms.set(json.dumps(failures))
            self._store(self.failedTomograms)

    def _appendToOutput(self, name, create, fill, tsId):
        """Under the protocol lock, get the output ``name`` (or ``create()`` and register it as an
        open set derived from the input), let ``fill(outputSet)`` append the items of tomogram
        ``tsId``, and save it. An output that already holds ``tsId`` is left as it is: a continued
        run repeats the registration step of a tomogram when it was stopped during that step."""
        with self._lock:
            retry_on_sqlite_lock(log=logger)(self._appendToOutputUnlocked)(name, create, fill, tsId)

    def _appendToOutputUnlocked(self, name, create, fill, tsId):
        output = getattr(self, name, None)
        if output is None:
            output = create()
            output.setStreamState(Set.STREAM_OPEN)
            fill(output)
            output.write()
            self._defineOutputs(**{name: output})
            self._defineSourceRelation(self._sourceOfOutputs(), output)
        elif tsId in self._tsIdsIn(output):
            logger.info(f"{tsId} is already in {name}: not added again")
            return
        else:
            output.enableAppend()
            fill(output)
            output.write()
        self._store(output)

    @staticmethod
    def _tsIdsIn(output):
        """tsIds of the items of an output set; subtomograms carry it in their volName (cryoseg's rule)."""
        if hasattr(output, 'getTSIds'):
            return set(output.getTSIds())
        return set(output.getUniqueValues('_volName'))

    def _failureSummary(self):
        return [f"Failed {tsId}: {message}" for tsId, message in self.getFailures().items()]


class MaskOutputMixin:
    """For per-tomogram protocols whose result is one mask file per tomogram: the SetOfTomoMasks
    output ``tomoMasks``, linked to ``inputTomograms`` and registered tomogram by tomogram."""
    OUTPUT_NAME = 'tomoMasks'
    _possibleOutputs = {OUTPUT_NAME: SetOfTomoMasks}

    def _maskPath(self, tsId):
        return self._getExtraPath(f'{tsId}_mask.mrc')

    def registerTomogram(self, tsId):
        def create():
            output = self._createSet(SetOfTomoMasks, 'tomomasks%s.sqlite', '')
            output.copyInfo(self.inputTomograms.get())
            return output

        def fill(output):
            output.append(convert.make_tomo_mask(self._tomograms()[tsId], self._maskPath(tsId)))

        self._appendToOutput(self.OUTPUT_NAME, create, fill, tsId)
