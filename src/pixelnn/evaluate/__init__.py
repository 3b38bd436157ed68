"""Evaluation as in the paper: PixelNN side by side with stage 1, global nearest neighbours and a
pix2pix baseline (baselines/pix2pix); Rand-1 / Oracle tables, diversity, frequency analysis, figures.

Modules, each importing only those listed before it:

    methods.py        the methods, their labels, the per-output metrics, fixed counts (a leaf)
    metrics.py        pure metric functions (SSIM, edge AP, spectra, diversity, Fréchet, Rand-1/Oracle)
    cache.py          the per-input cache files and their keys
    candidates.py     every method's candidates for one input
    input_metrics.py  the metrics of one input's candidates
    aggregate.py      the tables' numbers from every input's metrics
    tables.py         report.json / report.md
    figures.py        the comparison grid, multiple-outputs strips, frequency plot, correspondences
    run.py            the job behind `pixelnn evaluate` (resumable per-input caches)
"""
