"""Progress lines for long loops ("what: i of n (p %)"), so that a user watching a protocol's log
or the command line sees how far a long step has come."""
import logging

logger = logging.getLogger(__name__)


class Progress:
    """Counts work units and logs a line each time another ``step`` percent is done (and at the end).

    ``log`` receives the line (default: this module's logger at INFO level, which Scipion writes to
    the protocol's log); ``step=0`` logs every unit.
    """

    def __init__(self, what, total, log=None, step=10.0):
        self.what = what
        self.total = max(int(total), 0)
        self.log = log or logger.info
        self.step = step
        self.done = 0
        self._next_percent = 0.0

    def advance(self, count=1):
        self.done += count
        percent = 100.0 * self.done / self.total if self.total else 100.0
        if percent >= self._next_percent or self.done >= self.total:
            self.log(f"{self.what}: {self.done} of {self.total} ({percent:.0f} %)")
            self._next_percent = (percent // self.step + 1) * self.step if self.step > 0 else 0.0
