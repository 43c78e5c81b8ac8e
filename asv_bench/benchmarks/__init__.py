"""numadam's airspeed velocity benchmarks.

- ``step``: the dense update step alone, by method, size and dtype, with a
  kernel that moves the same bytes for reference, and peak memory.
- ``loops``: minimize's loops, Python-driven and compiled, and the quality
  figures (steps to converge, final f) that tell a speed-up from a change of
  numerics.
- ``compile``: compilation and start-up, each in a fresh process.
- ``peers``: torch.optim, optax and a NumPy loop on the same work; skipped
  where the peer is not installed.
"""
