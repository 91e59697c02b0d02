"""Count packet sizes with an XDP program run in user space and print them as BCC does
(print_log2_hist with a {bucket, slot} key, print_linear_hist):

    python examples/workflows/histogram.py
"""
from pathlib import Path

import ebee
from ebee.packet import tcp_packet, udp_packet

OBJ = Path(__file__).resolve().parents[1] / "c" / "pktlen_hist.o"

with ebee.load(OBJ) as obj:
    prog = obj.programs["count_sizes"]
    for n in (0, 10, 100, 300, 1000):
        prog.run(udp_packet(payload=b"x" * n))
    prog.run(tcp_packet(payload=b"y" * 200))
    obj.maps["by_proto"].print_log2_hist("bytes", section_header="ip proto",
                                         bucket_sort_fn=sorted)
    print()
    obj.maps["linear"].print_linear_hist("64-byte steps")
