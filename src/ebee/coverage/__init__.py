"""Coverage of eBPF programs: which instructions, branches and C lines ran.

Both engines count when :data:`ebee.engines.probes.COVERAGE` is enabled (the
interpreter through its counted translation, the JIT through counters it compiles in
only then).  :func:`collect` turns the counters into :class:`CoverageData` (per source
file from BTF line_info, per program per instruction); data merges across processes
(pytest-xdist workers) through JSON files; :mod:`.lcov` and :mod:`.html` write the
reports.
"""
from .data import CoverageData, collect, enable, load, merge_files
from .html import write_html
from .lcov import parse_lcov, write_lcov

__all__ = ["CoverageData", "collect", "enable", "load", "merge_files", "parse_lcov",
           "write_html", "write_lcov"]
