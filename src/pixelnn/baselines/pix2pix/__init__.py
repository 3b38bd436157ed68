"""A pix2pix baseline (Isola et al., CVPR 2017) trained on the same (x, y) pairs as stage 1.

model.py       the U-Net generator with dropout, the PatchGAN discriminator, their configuration
checkpoint.py  pix2pix.pt: save, read, load_generator
train.py       the training loop under a budget (regress/budget.py), with resume
sample.py      outputs with dropout active (as the paper did), and their PSNR
run.py         a run folder: config.json, pix2pix.pt, metrics.json
"""
