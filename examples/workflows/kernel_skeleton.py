"""Load an object into the kernel the way a libbpf skeleton does, attach every program
from its SEC(), print what attached, then the counters.  Run as root:

    python examples/workflows/kernel_skeleton.py
"""
import os
from pathlib import Path

import ebee

OBJ = Path(__file__).resolve().parents[1] / "c" / "skeleton.o"

skel = ebee.open_object(OBJ)              # bpf_object__open: nothing created yet
skel.rodata.target_tgid = os.getpid()     # const volatile knob, before load
skel.maps["per_tgid"].max_entries = 256   # bpf_map__set_max_entries
skel.programs["pass"].autoload = False    # bpf_program__set_autoload(false)

with skel.load() as obj, obj.load_kernel() as k:
    report = k.attach()                   # <skel>__attach(), failures reported
    print(report)
    with open("/etc/hostname"):
        pass
    hits = k.maps[".bss"].lookup(0)
    print("openat calls seen:", int.from_bytes(hits[:8], "little"))
