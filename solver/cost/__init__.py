"""Pure cost functions: numbers in, numbers out (no PuLP, no I/O, no torch)."""
