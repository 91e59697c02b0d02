"""The verifier explorer (``ebee verify OBJ --html OUT.html``): one self-contained page
showing a program's source lines and instructions, its control-flow graph, the state
the verifier had at each instruction on every path it explored, where it pruned, and
for a rejected program the instruction Linux's message names."""
from .page import Explored, explore, render

__all__ = ["Explored", "explore", "render"]
