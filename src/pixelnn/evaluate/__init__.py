"""Evaluation as in the paper: PixelNN side by side with stage 1, global nearest neighbours and a
pix2pix baseline; Rand-1 / Oracle tables, diversity, frequency analysis, figures.

    metrics.py   pure metric functions (PSNR, SSIM, edge AP, spectra, diversity, Fréchet, Rand-1/Oracle)
    pix2pix.py   the pix2pix baseline: U-Net generator with dropout, PatchGAN, training, sampling
    run.py       the job behind `pixelnn evaluate` (resumable per-input caches)
    report.py    report.json / report.md
    figures.py   the comparison grid, multiple-outputs strips, frequency plot, correspondences
"""
