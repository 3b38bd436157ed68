"""Training options shared by the CLI and the library, importable without PyTorch (so --help is instant)."""

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_HELP = (
    "training arithmetic: auto (default: bf16 only where this CPU runs it natively and measurably faster), fp32, bf16"
)
DEMO_STEPS = 1000  # stage-1 steps of `pixelnn demo` (docs/benchmarks.md: held-out PSNR against steps on 2 AVX2 cores)
