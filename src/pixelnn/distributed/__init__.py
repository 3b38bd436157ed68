"""Running the bank build and batch synthesis on a Ray cluster (the optional [ray] extra).

Ray is imported only here, and only when `--ray` (or ray=...) asks for it, so that everything else
works on one machine without Ray installed.
"""
