"""PixelNN: example-based conditional image synthesis.

Stage 1 regresses a smooth image f(x) from an incomplete signal x; stage 2 copies high
frequencies pixel by pixel from training exemplars matched with hypercolumn descriptors.
"""

__version__ = "0.1.0"


def __getattr__(name):  # lazy: `import pixelnn` stays cheap for the CLI's --help
    if name in ("PixelNN", "Result", "Candidate"):
        from .synth import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
