"""ebee's verifier against the running kernel's: same verdicts, same error lines, same log.

Three sets, by which parity is measured:

- generated programs (``verifier_strategies``): about half deliberately
  broken; verdict, error line and the whole log (level 1 or 2) must match.
  ``EBEE_VERIFIER_EXAMPLES`` sets how many (default 40; the full run is 300+).
- the examples (``examples/c``, ``examples/asm``) and their broken variants
  (``tests/data/verifier``): verdict, error line, processed-instruction count
  and the log at levels 1 and 2.
- the corpus (``../shared/corpus/ebpf-samples``): a sample of small objects
  by default; every object the kernel can load with ``EBEE_SLOW=1``, which also
  prints the agreement figures.
- unprivileged mode: generated socket filters loaded by uid 65534, where the host
  lets unprivileged users call bpf() (``kernel.unprivileged_bpf_disabled=0``; with
  ``EBEE_UNPRIV_SYSCTL=1`` the test lowers it from 2 for its duration).

Logs are compared after removing what legitimately differs (map addresses and
the stack-liveness trace of Linux 6.18, see ``verifier_kernel.comparable_log``).
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebee import kernel_model
from ebee.asm import assemble
from ebee.uapi import MapType, ProgType
from ebee.verifier import verify

from kernel_helpers import unprivileged_bpf
from verifier_kernel import comparable_log, ebee_object, kernel_object, last_error_line
from verifier_strategies import verifier_programs

pytestmark = pytest.mark.usefixtures("kernel")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BROKEN = ROOT / "tests" / "data" / "verifier"
CORPUS = ROOT.parent / "shared" / "corpus" / "ebpf-samples"
N = int(os.environ.get("EBEE_VERIFIER_EXAMPLES", "40"))
# logs longer than this are not compared line by line (ebee keeps the last 16 MiB)
LOG_COMPARE_MAX = 4 << 20


def kernel_raw(insns, prog_type, level):
    from ebee.kernel import KernelLoadError, KernelProgram
    try:
        kp = KernelProgram(insns, prog_type, log_level=level)
    except KernelLoadError as e:
        return False, e.log or ""
    log = kp.log or ""
    kp.close()
    return True, log


def assert_same(kacc, klog, r, what="", insns=None):
    """Verdict, error line and (given) processed count everywhere; the log line by
    line where the host is a build whose log ebee models (kernel_model.LOG_BUILDS),
    elsewhere a log difference is an expected failure that names both builds."""
    assert r.accepted == kacc, f"{what}: kernel {'accepts' if kacc else 'rejects'}: " \
                               f"{last_error_line(klog)!r}; ebee: {r.error!r}"
    if not kacc:
        assert r.error == last_error_line(klog), what
    if insns is not None:
        assert r.insns_processed == insns, what
    if len(klog) < LOG_COMPARE_MAX:
        same = comparable_log(r.log) == comparable_log(klog)
        if not same and not kernel_model.host_logs_modelled():
            pytest.xfail(f"{what}: the host kernel {kernel_model.host_release()} logs "
                         f"differently from the builds ebee models {kernel_model.LOG_BUILDS}")
        assert comparable_log(r.log) == comparable_log(klog), what


@pytest.fixture(scope="module")
def kmaps():
    from ebee.kernel.maps import KernelMap
    arr = KernelMap(MapType.ARRAY, 4, 48, 4)
    hsh = KernelMap(MapType.HASH, 4, 48, 16)
    yield arr, hsh
    arr.close()
    hsh.close()


@settings(max_examples=N, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(prog=verifier_programs(), level=st.sampled_from([1, 2]))
def test_generated_programs_match_kernel(kmaps, prog, level):
    arr, hsh = kmaps
    text, pt = prog
    insns = assemble(text.replace("{ARRAY}", str(arr.fd)).replace("{HASH}", str(hsh.fd)))
    kacc, klog = kernel_raw(insns, pt, level)
    r = verify(insns, prog_type=pt, log_level=level, maps={arr.fd: arr, hsh.fd: hsh},
               facts=False)
    assert_same(kacc, klog, r, text)


def test_unprivileged_generated_programs_match_kernel(kmaps):
    from kernel_helpers import run_unprivileged

    from ebee.kernel import KernelLoadError, KernelProgram
    arr, hsh = kmaps
    rows = []

    @settings(max_examples=N, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(prog=verifier_programs(prog_types=(ProgType.SOCKET_FILTER,)))
    def check(prog):
        text, pt = prog
        insns = assemble(text.replace("{ARRAY}", str(arr.fd)).replace("{HASH}", str(hsh.fd)))

        def load():                    # as uid 65534, without capabilities
            try:
                kp = KernelProgram(insns, pt, log_level=1)
            except KernelLoadError as e:
                return json.dumps([False, e.log or ""])
            kp.close()
            return json.dumps([True, kp.log or ""])
        kacc, klog = json.loads(run_unprivileged(load))
        r = verify(insns, prog_type=pt, log_level=1, unpriv=True,
                   maps={arr.fd: arr, hsh.fd: hsh}, facts=False)
        assert_same(kacc, klog, r, text)
        rows.append(kacc)

    with unprivileged_bpf():
        check()
    assert len(rows) >= N // 2, f"only {len(rows)} programs compared"


# a loop the verifier unrolls to its 1M-instruction limit (half a minute in ebee):
# with EBEE_SLOW=1 only, and at level 1 only
HUGE = {"tc_unbounded.o"}


def _objects():
    paths = sorted(glob.glob(str(EXAMPLES / "c" / "*.o"))) + \
        sorted(glob.glob(str(BROKEN / "*.o")))
    return [pytest.param(p, marks=pytest.mark.slow) if Path(p).name in HUGE else p
            for p in paths]


@pytest.mark.parametrize("path", _objects(), ids=lambda p: Path(p).name)
def test_examples_and_broken_variants_match_kernel(path):
    levels = (1,) if Path(path).name in HUGE else (1, 2)
    with ebee_object(path) as obj, kernel_object(obj) as kload:
        for name, prog in obj.programs.items():
            for level in levels:
                kv = kload(prog, level)
                if not kv.accepted and kv.insns_processed is None and \
                        prog.type is ProgType.LIRC_MODE2:
                    continue       # no CONFIG_BPF_LIRC_MODE2 here: refused unverified (test_lirc)
                r = verify(prog, log_level=level, facts=False)
                assert_same(kv.accepted, kv.log, r, f"{name} level {level}", kv.insns_processed)


@pytest.mark.parametrize("path,prog_type", [("atomics.s", ProgType.SOCKET_FILTER),
                                            ("checksum.s", ProgType.XDP)])
def test_example_assembly_matches_kernel(path, prog_type):
    insns = assemble((EXAMPLES / "asm" / path).read_text())
    for level in (1, 2):
        kacc, klog = kernel_raw(insns, prog_type, level)
        assert_same(kacc, klog, verify(insns, prog_type=prog_type, log_level=level), path)


# every object of the corpus's build/ directory (small programs, many deliberately
# bad: maps, helpers, packets, loops, subprograms, tail calls) and a few real ones
CORPUS_SAMPLE = ["build/*.o", "linux/sockex1_kern.o", "linux/xdp1_kern.o",
                 "linux/tcp_basertt_kern.o", "suricata/xdp_filter.o", "cilium-core/bpf_xdp.o"]


def corpus_parity(paths):
    """Verdict and error-line agreement over the programs the kernel's verifier
    reached (a program the kernel refuses before verifying -- no log -- is skipped)."""
    rows = []
    for path in paths:
        try:
            ctx = ebee_object(path)
            obj = ctx.__enter__()
        except Exception:
            continue                     # ebee (like libbpf) cannot open it: not comparable
        try:
            with kernel_object(obj) as kload:
                for name, prog in obj.programs.items():
                    kv = kload(prog, 1)
                    if kv.insns_processed is None:
                        continue
                    r = verify(prog, log_level=1, facts=False)
                    rows.append((f"{os.path.relpath(path, CORPUS)}:{name}", kv, r))
        except Exception:
            pass                         # the kernel cannot create its maps/BTF
        finally:
            ctx.__exit__(None, None, None)
    return rows


def _report(rows):
    verdicts = sum(kv.accepted == r.accepted for _, kv, r in rows)
    rejected = [(n, kv, r) for n, kv, r in rows if not kv.accepted and not r.accepted]
    lines = sum(kv.error == r.error for _, kv, r in rejected)
    print(f"\ncorpus: {len(rows)} programs, verdicts agree {verdicts}/{len(rows)}, "
          f"error lines agree {lines}/{len(rejected)}")
    return [(n, kv.error, r.error) for n, kv, r in rows if kv.accepted != r.accepted]


def test_corpus_sample_matches_kernel():
    paths = sorted(p for pat in CORPUS_SAMPLE for p in glob.glob(str(CORPUS / pat)))
    if not paths:
        pytest.skip(f"corpus not found at {CORPUS}")
    rows = corpus_parity(paths)
    assert rows
    assert _report(rows) == []
    for name, kv, r in rows:
        if not kv.accepted:
            assert r.error == kv.error, name


@pytest.mark.slow
def test_whole_corpus_matches_kernel():
    paths = sorted(glob.glob(str(CORPUS / "**" / "*.o"), recursive=True))
    if not paths:
        pytest.skip(f"corpus not found at {CORPUS}")
    assert _report(corpus_parity(paths)) == []
