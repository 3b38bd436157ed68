"""The local web app behind `pixelnn serve`: pick, upload or draw an input, see the candidates and
hover any output pixel to see the exemplar pixel it was copied from.

    from pixelnn.serve import create_app
    app = create_app(PixelNN.load("runs/zap"), val="photos/", work="serve-work")
"""

from .app import create_app

__all__ = ["create_app"]
