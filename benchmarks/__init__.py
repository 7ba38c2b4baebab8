"""Benchmarks of grassmann_nn against geoopt, geotorch, torch and scikit-learn.

Run them all with ``python -m benchmarks`` (``--help`` lists the options); the results go to
``benchmarks/results/*.json`` and ``docs/benchmarks.md``.
"""

# grassmann_nn is imported before anything that imports geoopt, because grassmann_nn imports
# geoopt with the FutureWarning of its torch.jit.script decorators (torch >= 2.9) silenced.
import grassmann_nn  # noqa: F401
