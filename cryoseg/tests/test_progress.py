"""Progress lines of long loops (the protocol-log side is checked in test_continue.py)."""
from cryoseg.core.progress import Progress
from cryoseg.core.slabs import iter_slabs


def test_lines_every_step_percent_and_at_the_end():
    lines = []
    progress = Progress('slabs', 7, lines.append, step=25)
    for _ in range(7):
        progress.advance()
    assert lines == ['slabs: 1 of 7 (14 %)', 'slabs: 2 of 7 (29 %)', 'slabs: 4 of 7 (57 %)',
                     'slabs: 6 of 7 (86 %)', 'slabs: 7 of 7 (100 %)']


def test_step_zero_logs_every_unit_and_empty_work_logs_nothing():
    lines = []
    progress = Progress('tomograms', 3, lines.append, step=0)
    for _ in range(3):
        progress.advance()
    assert lines == ['tomograms: 1 of 3 (33 %)', 'tomograms: 2 of 3 (67 %)', 'tomograms: 3 of 3 (100 %)']
    Progress('nothing', 0, lines.append)
    assert len(lines) == 3


def test_slab_loop_reports_its_progress(caplog):
    caplog.set_level('INFO', logger='cryoseg.core.progress')
    parts = list(iter_slabs(100, 10, halo=2, progress='filtering'))
    assert len(parts) == 10
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == 'filtering (slabs): 1 of 10 (10 %)'
    assert messages[-1] == 'filtering (slabs): 10 of 10 (100 %)'
    assert len(messages) == 10
    caplog.clear()
    list(iter_slabs(100, 10))
    assert not caplog.records, 'loops without a description stay silent'
