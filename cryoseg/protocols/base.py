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

Crash safety (a run killed at any moment and continued ends with the outputs of an uninterrupted
run). What pyworkflow keeps of a killed run:

- the run database (``run.db``: the protocol, its attributes and outputs) is *replaced* at every
  launch, Continue included, by the project's copy of the protocol (``Project.launchProtocol`` copies
  ``project.sqlite`` over it). The project copies ``run.db`` back only when it looks at the run (the
  GUI's refresh, ``Project._updateProtocol``, Stop). So whatever a killed process stored after the
  project's last look (outputs, scalar outputs, bookkeeping attributes) may be rolled back;
- the step states (``logs/steps.sqlite``) are never rolled back: a Continue skips every step marked
  finished, even when what that step stored has been rolled back;
- files in the run folder are never rolled back.

Hence the rule: **the run folder's files are the truth; everything in run.db is re-derived from
them.** In practice:

1. A step's files are complete once it is marked finished (a step killed half-way is run again and
   rewrites them), and a tomogram's results are registered only after its processing step returned.
2. Bookkeeping that cannot be re-derived from result files (failures, per-tomogram statistics, the
   ``JOURNALED_ATTRIBUTES`` of a subclass, scalar outputs such as a box size, and how many items each
   tomogram added to each output) is written to a journal file in the extra folder (atomically,
   *before* run.db), and restored from it at the start of every launch.
3. The close step runs at every launch, even when a previous launch finished it: it registers again
   every processed tomogram missing from the outputs (registration is idempotent: a tomogram already
   in an output is not added twice) and then checks the outputs against the journal. A run whose
   outputs still lack items fails with a message naming them; it never ends "finished" without them.
4. A write that fails for lack of space or of a writable run folder fails the run (not only the
   tomogram) with a clear message; Continue after freeing space completes it.

``CRYOSEG_TEST_KILL_AT`` (tests only): the process SIGKILLs itself at the named point (see
:func:`killPointForTests`), so that tests can kill a run at any step boundary or inside a step.
"""
import errno
import functools
import json
import logging
import os
import signal
import time
import traceback

from pwem.protocols import EMProtocol
from pyworkflow.exceptions import PyworkflowException
from pyworkflow.object import Boolean, Float, Integer, Set, String
from pyworkflow.protocol import STATUS_NEW, STEPS_PARALLEL
from pyworkflow.utils.retry_streaming import retry_on_sqlite_lock
from tomo.objects import SetOfTomoMasks
from tomo.protocols import ProtTomoBase

from .. import convert
from ..core.atomic import atomic_output
from ..core.errors import CryoSegInputError
from ..core.progress import Progress

logger = logging.getLogger(__name__)


KILL_AT_VARIABLE = 'CRYOSEG_TEST_KILL_AT'
NO_SPACE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
SCALAR_OUTPUTS = (Boolean, Float, Integer, String)
SCALAR_CLASSES = {cls.__name__: cls for cls in SCALAR_OUTPUTS}


def killPointForTests(point, beforeKill=None):
    """Test hook: SIGKILL this process (as a crash or a lost node would) when the environment variable
    ``CRYOSEG_TEST_KILL_AT`` names ``point``, after calling ``beforeKill()``. Points are
    ``'<step function>:<arguments>:start'`` and ``':end'`` (around every step's work),
    ``'processTomogramStep:<tsId>:torn'`` (files written, truncated as a kill during their write leaves
    them), ``'<output>:<tsId>:filled'`` (items added, not committed) and ``'<output>:<tsId>:stored'``."""
    if os.environ.get(KILL_AT_VARIABLE) == point:
        if beforeKill is not None:
            beforeKill()
        logger.info(f'{KILL_AT_VARIABLE}: killed at {point}')
        os.kill(os.getpid(), signal.SIGKILL)


def _failingCleanlyOnInputErrors(step):
    """``step`` with a CryoSegInputError turned into the exception pyworkflow reports without a
    traceback; the name is kept, so continuing a run still recognises its finished steps. The kill
    points of the tests surround its work."""
    @functools.wraps(step)
    def run(*args):
        point = f"{step.__name__}:{','.join(map(str, args))}"
        killPointForTests(f'{point}:start')
        try:
            result = step(*args)
        except CryoSegInputError as err:
            raise PyworkflowException(str(err)) from None
        killPointForTests(f'{point}:end')
        return result
    return run


def _truncateFilesWrittenSince(folder, since, keep):
    """Cut every file of ``folder`` but ``keep`` modified after ``since`` to half its size: what a
    process killed while writing them leaves behind (test hook)."""
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            if path != keep and os.path.getmtime(path) >= since and os.path.getsize(path):
                os.truncate(path, os.path.getsize(path) // 2)


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
    """Base class (not a protocol users see) for per-tomogram parallel processing. Crash safety
    follows the rule of the module docstring: the run folder's files are the truth."""
    _label = None
    stepsExecutionMode = STEPS_PARALLEL
    JOURNAL_NAME = 'run_journal.json'
    #: String attributes holding bookkeeping the steps store (``self._store(attribute)``); they are
    #: journaled and restored after a Continue (module docstring). Subclasses add their own.
    JOURNALED_ATTRIBUTES = ('failedTomograms',)

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
        started = time.time()
        try:
            self.processTomogram(tsId)
            self._clearFailure(tsId)  # a continued run may succeed where the killed one failed
        except CryoSegInputError as err:
            self._recordFailure(tsId, str(err))
        except OSError as err:
            if not self._cannotWriteResults(err):
                self._recordFailedTomogram(tsId, err)
            else:  # every tomogram would fail the same way: stop the run, register nothing more
                raise CryoSegInputError(f'{tsId}: cannot write the results in {self._getExtraPath()}: '
                                        f'{os.strerror(err.errno)}. Free some space (or make the folder '
                                        'writable) and continue the run.') from None
        except Exception as err:
            self._recordFailedTomogram(tsId, err)
        killPointForTests(f'processTomogramStep:{tsId}:torn',
                          lambda: _truncateFilesWrittenSince(self._getExtraPath(), started, self._journalPath()))
        with self._lock:
            self._tomogramsDone.advance()

    def _cannotWriteResults(self, err):
        """A full disk, or a run folder that cannot be written (not a problem of the tomogram)."""
        if err.errno in NO_SPACE_ERRORS:
            return True
        runFolder = os.path.abspath(self.getWorkingDir())
        return err.errno == errno.EACCES and bool(err.filename) and \
            os.path.abspath(err.filename).startswith(runFolder + os.sep)

    def _recordFailedTomogram(self, tsId, err):
        """One bad tomogram must not stop the others; the trace goes to the log."""
        logger.error(traceback.format_exc())
        self._recordFailure(tsId, f"{type(err).__name__}: {err}")

    def registerTomogramStep(self, tsId):
        if tsId not in self.getFailures():
            self.registerTomogram(tsId)

    def closeOutputStep(self):
        """Fail if every tomogram failed; else register again what a Continue rolled back (module
        docstring), check that the outputs hold everything the journal lists, and close them."""
        failures = self.getFailures()
        if failures and len(failures) == len(self._tsIdsToProcess()):
            raise CryoSegInputError('every tomogram failed:\n' + '\n'.join(
                f'{tsId}: {message}' for tsId, message in failures.items()))
        for tsId in self._tsIdsToProcess():
            self.registerTomogramStep(tsId)
        missing = self._missingOutputs()
        if missing:
            raise CryoSegInputError('the run ended without all its outputs: ' + '; '.join(missing)
                                    + '. Their result files in the run folder may have been deleted or '
                                      'changed: restart the run.')
        self._closeOutputSet()

    # ----------------------------------------------------------------- crash safety (module docstring)
    def _runSteps(self, doneSteps):
        """Restore the journaled state a Continue may have rolled back, and run the close step at every
        launch, even when a previous launch finished it."""
        self._restoreFromJournal()
        for step in self._steps:
            if step.funcName.get() == 'closeOutputStep' and step.isFinished():
                step.setStatus(STATUS_NEW)
                # copied from the previous launch's steps, they were read back from the database as text
                step.setPrerequisites(*map(int, step.getPrerequisites()))
                doneSteps -= 1
        super()._runSteps(doneSteps)

    def _journalPath(self):
        return self._getExtraPath(self.JOURNAL_NAME)

    def _readJournal(self):
        path = self._journalPath()
        if not os.path.exists(path):
            return {'attributes': {}, 'scalarOutputs': {}, 'registered': {}}
        with open(path) as handle:
            return json.load(handle)

    def _updateJournal(self, change):
        """Apply ``change(journal)`` and write the journal atomically (under the protocol lock)."""
        with self._lock:
            journal = self._readJournal()
            change(journal)
            with atomic_output(self._journalPath(), suffix='.json') as temporary:
                with open(temporary, 'w') as stream:
                    json.dump(journal, stream, indent=1)

    def _store(self, *objs):
        """Also journal the ``JOURNALED_ATTRIBUTES`` among ``objs`` (before run.db: the journal is never
        older than run.db)."""
        with self._lock:
            names = [name for name in self.JOURNALED_ATTRIBUTES
                     if any(obj is getattr(self, name, None) for obj in objs)]
            if names:
                self._updateJournal(lambda journal: journal['attributes'].update(
                    {name: getattr(self, name).get() for name in names}))
            super()._store(*objs)

    def _defineOutputs(self, **outputs):
        """Also journal scalar outputs (e.g. a box size), which no result file of a tomogram carries. A
        scalar output defined again (its step run again after a kill) gets the new value in place."""
        scalars = {name: value for name, value in outputs.items() if isinstance(value, SCALAR_OUTPUTS)}
        if scalars:
            self._updateJournal(lambda journal: journal['scalarOutputs'].update(
                {name: [type(value).__name__, value.get()] for name, value in scalars.items()}))
        for name, value in list(scalars.items()):
            existing = getattr(self, name, None)
            if type(existing) is type(value):
                existing.set(value.get())
                self._store(existing)
                del outputs[name]
        if outputs:
            super()._defineOutputs(**outputs)

    def _restoreFromJournal(self):
        journal = self._readJournal()
        for name, value in journal['attributes'].items():
            attribute = getattr(self, name)
            if attribute.get() != value:
                attribute.set(value)
                super()._store(attribute)
        for name, (className, value) in journal['scalarOutputs'].items():
            if getattr(self, name, None) is None:
                logger.info(f'{name} restored from the run journal')
                super()._defineOutputs(**{name: SCALAR_CLASSES[className](value)})

    def _missingOutputs(self):
        """What the outputs lack compared with the items the journal says each tomogram added."""
        missing = []
        for name, counts in self._readJournal()['registered'].items():
            output = getattr(self, name, None)
            expected = sum(counts.values())
            if output is None:
                missing.append(f'{name} is not registered ({expected} items of {", ".join(sorted(counts))})')
                continue
            present = self._tsIdsIn(output)
            lacking = [f'{tsId} ({count} items)' for tsId, count in sorted(counts.items())
                       if count and tsId not in present]
            if lacking:
                missing.append(f'{name} lacks {", ".join(lacking)}')
            elif output.getSize() != expected:
                missing.append(f'{name} holds {output.getSize()} items instead of {expected}')
        for name in self._readJournal()['scalarOutputs']:
            if getattr(self, name, None) is None:
                missing.append(f'{name} is not registered')
        return missing

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

    def _clearFailure(self, tsId):
        with self._lock:
            failures = self.getFailures()
            if failures.pop(tsId, None) is not None:
                self.failedTomograms.set(json.dumps(failures))
                self._store(self.failedTomograms)

    def _appendToOutput(self, name, create, fill, tsId):
        """Under the protocol lock, get the output ``name`` (or ``create()`` and register it as an
        open set derived from the input), let ``fill(outputSet)`` append the items of tomogram
        ``tsId``, and save it. An output that already holds ``tsId`` is left as it is: a continued
        run repeats the registration of a tomogram when it was stopped during it, and the close step
        repeats every registration (module docstring). The number of items is journaled first."""
        with self._lock:
            retry_on_sqlite_lock(log=logger)(self._appendToOutputUnlocked)(name, create, fill, tsId)

    def _appendToOutputUnlocked(self, name, create, fill, tsId):
        output = getattr(self, name, None)
        if output is None:
            output = create()
            output.setStreamState(Set.STREAM_OPEN)
        elif tsId in self._tsIdsIn(output):
            logger.info(f"{tsId} is already in {name}: not added again")
            return
        else:
            output.enableAppend()
        before = output.getSize()
        fill(output)
        added = output.getSize() - before
        self._updateJournal(lambda journal: journal['registered'].setdefault(name, {}).update({tsId: added}))
        killPointForTests(f'{name}:{tsId}:filled')
        output.write()
        if getattr(self, name, None) is None:
            self._defineOutputs(**{name: output})
            self._defineSourceRelation(self._sourceOfOutputs(), output)
        self._store(output)
        killPointForTests(f'{name}:{tsId}:stored')

    @staticmethod
    def _tsIdsIn(output):
        """tsIds of the items of an output set; subtomograms carry it in their volName (cryoseg's rule)."""
        if not output._getMapper().count():  # also when the set has no table yet (no item ever added)
            return set()
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
