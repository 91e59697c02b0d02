"""The interpreter engine (translation to Python, checked memory)."""
from .interpreter import INTERP, InterpEngine, InterpImage, Interpreter

__all__ = ["INTERP", "InterpEngine", "InterpImage", "Interpreter"]
