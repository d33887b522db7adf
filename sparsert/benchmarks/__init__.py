"""``sparsert bench``: time and peak memory per case of each inference workload, on the shared data.

- :mod:`~sparsert.benchmarks.workloads`: what is measured (completion, dose, click refinement,
  cross-modal segmentation) and how one case is timed;
- :mod:`~sparsert.benchmarks.measure`: a fresh process per workload, step timing, peak memory;
- :mod:`~sparsert.benchmarks.machine`: the machine the figures belong to;
- :mod:`~sparsert.benchmarks.suite`: model and data resolution, skipping what is not available;
- :mod:`~sparsert.benchmarks.report`: ``bench.json`` and ``bench.md``.
"""
