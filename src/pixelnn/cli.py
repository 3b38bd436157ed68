"""`pixelnn`: one verb per job. Run `pixelnn VERB --help` for examples."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import warnings
from pathlib import Path

from .data.options import FACTOR, SIGNALS, SIZE
from .errors import ConfigError, PixelNNError
from .features import BACKBONES, DEFAULT_BACKBONE
from .logs import console
from .regress.options import DEMO_STEPS, PRECISION_HELP, PRECISIONS
from .synth import LIKE_K

DATA = "../shared/data"

TRAIN_EXAMPLES = f"""examples:
  # faces, 12x12 -> 96x96 (low resolution by 8), 25 minutes of training, then a bank of the same faces
  pixelnn train --data {DATA}/celeba/train --signal lowres --labels {DATA}/celeba/train_identity.csv \\
      --val {DATA}/celeba/val --out runs/celeba-lowres --minutes 25
  # edges -> shoes from pix2pix pair files (photo|edges: B is the input, so BtoA)
  pixelnn train --data {DATA}/edges2shoes/train --pairs BtoA --val {DATA}/edges2shoes/val --out runs/shoes
  # surface normals of faces -> photos: a normal map is estimated once per photo (needs `make setup-normals`)
  pixelnn train --data {DATA}/celeba/train --signal normals --val {DATA}/celeba/val --out runs/celeba-normals
  # your own signal: matching file names in two folders
  pixelnn train --data my/normals --targets my/photos --out runs/normals
  # 3000 steps whatever the machine (repeatable), at most 30 minutes; float32 forced
  pixelnn train --data {DATA}/edges2shoes/train --pairs BtoA --out runs/shoes-3k --steps 3000 --minutes 30 \
--precision fp32
  # a small set (stage 1 learns its training pairs): cross-fit the bank with 2 fold models
  pixelnn train --data {DATA}/edges2shoes/train --pairs BtoA --out runs/shoes --folds 2
Training resumes where it stopped when run again with the same --out. It prints steps, epochs,
the precision chosen for this CPU, and stage-1 PSNR beside its baselines (bicubic, mean image)."""

INDEX_EXAMPLES = f"""examples:
  # (re)build the bank of a model from its training photos, with UT-Zap50K category labels
  pixelnn index --model runs/zap --data {DATA}/ut-zap50k/train --signal edges --labels path:2
  # add more exemplars to an existing bank (no retraining)
  pixelnn index --model runs/celeba-lowres --data more/faces --signal lowres
  # on a Ray cluster (`ray start --head` on one machine, `ray start --address HEAD:6379` on the others)
  pixelnn index --model runs/celeba-lowres --data {DATA}/celeba/train --signal lowres --ray HEAD:6379
The bank is versioned and refuses a model other than the one that built it."""

VERIFY_EXAMPLES = """examples:
  pixelnn verify --model runs/celeba-lowres            # reads every file of runs/celeba-lowres/bank
  pixelnn verify --model runs/zap --bank /data/zap-bank
Opening a bank (any verb) checks its files' sizes, shapes and types; verify also recomputes the sha256
of every array file and names each one that differs from the sum stored when its shard was written.
Exits 2 when a file differs. Shards written before sums were stored are listed as unchecked."""

COMPACT_EXAMPLES = """examples:
  pixelnn compact runs/celeba-lowres/bank --out runs/celeba-lowres/bank-v2
  # then give it to any verb: pixelnn synthesize --model runs/celeba-lowres --bank runs/celeba-lowres/bank-v2 ...
Banks written by this PixelNN are compact already (format version 2: f(x) in 8 bits, global
descriptors in float16, pixel descriptors as 6-byte codes, 129 KB per 96x96 exemplar of edges);
this makes a compact copy of an older (version 1) bank without recomputing any descriptor. The
old bank is left as it is; the copy appears complete or not at all."""

SYNTH_EXAMPLES = f"""examples:
  # 72 candidates for validation photos turned into the model's input (12x12 or edges), with originals
  pixelnn synthesize --model runs/celeba-lowres --data {DATA}/celeba/val --limit 4 --out out/celeba
  # your own input signals (an edge sketch, a 12x12 image), a custom grid, only 'Boots' exemplars
  pixelnn synthesize --model runs/zap sketch.png --grid 5:1:3,10:1:whole --restrict Boots --out out/sketch
  # pair files, and exemplars chosen by id
  pixelnn synthesize --model runs/shoes --data {DATA}/edges2shoes/val --pairs BtoA --ids 3,17,42 --out out/shoes
  # outputs that look like an example photo; the eyes (white in eyes.png) from exemplars 12 and 40 only
  pixelnn synthesize --model runs/celeba-lowres --data {DATA}/celeba/val --limit 1 --like me.jpg \\
      --region eyes.png:ids=12,40 --out out/control
  # a folder of many inputs on a Ray cluster; a rerun skips the inputs already done
  pixelnn synthesize --model runs/celeba-lowres --data {DATA}/celeba/val --out out/val --ray HEAD:6379
Grid items are n:first:window (window an odd or even size, or 'whole'); 'paper72' and 'global' are named grids.
Each input's folder is written whole or not at all; inputs done with the same settings are skipped."""

SERVE_EXAMPLES = f"""examples:
  # the demo's model on http://127.0.0.1:8000/ (inputs listed from its bank)
  pixelnn serve --model demo-out/model
  # faces: list validation photos, make the 12x12 inputs from them; keep result files in serve-work/
  pixelnn serve --model runs/celeba-lowres --val {DATA}/celeba/val --work serve-work --port 8080
Open the printed URL: choose, upload or draw an input, hover a candidate's pixel to see its source.
The server listens on the loopback address only unless --host says otherwise; Ctrl-C stops it."""

DEMO_EXAMPLES = """examples:
  pixelnn demo                      # a few minutes on 2 CPU cores; writes demo-out/results/index.html
  pixelnn demo --steps 300 --out /tmp/demo   # a shorter stage 1
Trains on Fashion-MNIST shoes and bags (Debian package dataset-fashion-mnist): HED edges -> image."""

PIX2PIX_EXAMPLES = f"""examples:
  # the pix2pix baseline with the data options and budget of a stage-1 model (its prepared data is reused)
  pixelnn train-pix2pix --data {DATA}/celeba/train --signal lowres --labels {DATA}/celeba/train_identity.csv \\
      --val {DATA}/celeba/val --out runs/celeba-lowres-p2p --minutes 25 --cache runs/celeba-lowres/cache
  # edges -> shoes from pix2pix pair files (photo|edges: BtoA)
  pixelnn train-pix2pix --data {DATA}/edges2shoes/train --pairs BtoA --out runs/shoes-p2p --minutes 20
U-Net generator with dropout, 70x70 PatchGAN, L1 (x100) + BCE GAN loss, Adam 2e-4 (0.5, 0.999).
Training resumes where it stopped when run again with the same --out."""

EVALUATE_EXAMPLES = f"""examples:
  # stage 1, global NN, PixelNN (72 candidates) and pix2pix (72 dropout samples) on 100 validation faces
  pixelnn evaluate --model runs/celeba-lowres --pix2pix runs/celeba-lowres-p2p --data {DATA}/celeba/val \\
      --limit 100 --out eval/celeba-lowres
  # the same faces also scored by the normals estimated on every output (the paper's angular statistics)
  pixelnn evaluate --model runs/celeba-lowres --data {DATA}/celeba/val --limit 100 --face-normals on --out eval/cl
  # pair files; without --pix2pix only stage 1, global NN and PixelNN are compared
  pixelnn evaluate --model runs/shoes --data {DATA}/edges2shoes/val --pairs BtoA --limit 50 --out eval/shoes
Writes OUT/report.md, OUT/report.json (Rand-1 / Oracle tables, diversity, spectra, Frechet distance)
and OUT/figures/*.png. Per-input results are cached in OUT/cache: rerun the same command to resume."""


def _data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        type=Path,
        required=required,
        help="folder of photos, of A|B pair files (--pairs), or of inputs (--targets)",
    )
    g.add_argument(
        "--pairs",
        choices=["AtoB", "BtoA"],
        help="files hold input|target side by side; BtoA: the right half is the input",
    )
    g.add_argument(
        "--targets", type=Path, help="folder of target photos whose names match the files in --data (inputs)"
    )
    g.add_argument(
        "--signal",
        choices=SIGNALS,
        help="input made from photos: 12x12 (lowres), HED edges, Canny edges, or surface normals of faces "
        "(normals: MediaPipe's face mesh, the optional extra `make setup-normals`; photos without a face are skipped)",
    )
    g.add_argument("--labels", help="'path', 'path:N' (first N folders of each file's path) or a CSV file,label")
    g.add_argument(
        "--size", type=int, help=f"working size of outputs (default {SIZE} when training; a model's own otherwise)"
    )
    g.add_argument(
        "--factor",
        type=int,
        help=f"downsampling factor of --signal lowres (default {FACTOR} when training; a model's own otherwise)",
    )
    g.add_argument("--limit", type=int, help="use only the first N images")


SETUP_WEIGHTS_EXAMPLES = """examples:
  pixelnn setup-weights                          # run once after installing; `make setup` does it
  PIXELNN_CACHE=/data/cache pixelnn setup-weights   # another cache folder (the same variable when running)
Each file is checked against its pinned sha256 when converted and whenever a backbone loads it."""

CONVERT_EXAMPLES = """examples:
  pixelnn convert runs/celeba-lowres              # stage1.pt -> stage1.safetensors, then stage1.pt is removed
  pixelnn convert runs/shoes-pix2pix --keep-old   # pix2pix.pt rewritten; the old file kept as pix2pix.pt.old
Folders from older PixelNN versions still load without converting (their torch.save files are read with
torch.load(weights_only=True), which refuses anything but tensors and numbers); converting makes them
pickle-free, so they can be shared. Each new file is read back and compared with the old before it is removed."""


def _budget_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("budget (training stops at whichever limit comes first)")
    g.add_argument("--steps", type=int, default=0, help="optimizer steps (default: no step limit)")
    g.add_argument("--epochs", type=int, default=0, help="passes over the training data (default: no epoch limit)")
    g.add_argument(
        "--minutes",
        type=float,
        help="cap on training time (default 20 when neither --steps nor --epochs is given, else none)",
    )
    g.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)


def _train_args(p: argparse.ArgumentParser) -> None:
    _data_args(p)
    p.add_argument("--out", type=Path, required=True, help="model folder to create or resume")
    p.add_argument("--val", type=Path, help="validation data of the same kind, for PSNR against bicubic")
    _budget_args(p)
    p.add_argument("--width", type=int, default=16, help="U-Net channels at full resolution (default 16)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument(
        "--weight-decay", type=float, default=0.0, help="L2 penalty on the weights (the paper's Eq. 1; default 0)"
    )
    _backbone_arg(p, f"pixel descriptors (default {DEFAULT_BACKBONE})")
    p.add_argument("--no-index", action="store_true", help="do not build the bank from the training data")
    p.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="cross-fit the bank: also train K fold models (OUT/folds/k, each on the pairs outside its fold, "
        "for as many epochs: K - 1 times the training), so each stored f(x_k) comes from a stage 1 that "
        "never saw that pair, as a query's does",
    )
    p.add_argument(
        "--descriptors",
        type=int,
        metavar="D",
        help="store D-dim reduced pixel descriptors in the bank for the fast search (e.g. 32)",
    )


def _index_args(p: argparse.ArgumentParser) -> None:
    _model_arg(p)
    _data_args(p)
    _bank_arg(p)
    _backbone_arg(p, "descriptor backbone of a new bank (default: the model's; an existing bank keeps its own)")
    p.add_argument(
        "--descriptors",
        type=int,
        metavar="D",
        help="for a new bank: store D-dim reduced pixel descriptors for the fast search",
    )
    p.add_argument(
        "--allow-duplicates",
        action="store_true",
        help="add exemplars even if the bank already holds the same input and target "
        "(default: skip them, so a rerun adds nothing twice)",
    )
    p.add_argument(
        "--chunk",
        type=int,
        metavar="N",
        help="exemplars computed and committed at once, one shard each (default 1024; with --ray, about one "
        "chunk per worker up to 1024): memory grows with N, not with the number of images",
    )
    _ray_arg(p)


def _verify_args(p: argparse.ArgumentParser) -> None:
    _model_arg(p)
    _bank_arg(p)


def _compact_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bank", type=Path, metavar="BANK", help="the bank folder to copy (version 1)")
    p.add_argument("--out", type=Path, required=True, help="new folder for the compact bank")


def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", type=Path, metavar="MODEL_DIR", help="model (or pix2pix) folder to convert in place")
    p.add_argument(
        "--keep-old",
        action="store_true",
        help="keep the old file (stage1.pt stays; pix2pix.pt is kept as pix2pix.pt.old)",
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="read an old file that holds more than tensors and numbers with full unpickling, which can run "
        "code: only for a file you made yourself or fully trust",
    )


def _synthesize_args(p: argparse.ArgumentParser) -> None:
    _model_arg(p)
    p.add_argument("inputs", nargs="*", type=Path, help="input signal images (or folders of them)")
    _data_args(p, required=False)
    p.add_argument(
        "--from-photo", action="store_true", help="the positional inputs are photos: make the model's input from them"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _bank_arg(p)
    p.add_argument(
        "--search",
        choices=["auto", "exact", "fast"],
        default="auto",
        help="pixel search (default auto: fast when the bank stores reduced descriptors)",
    )
    _device_arg(p)
    _ray_arg(p)
    _request_args(p)


def _request_args(p: argparse.ArgumentParser) -> None:
    """What to make and from which exemplars (synth/request.py reads these into a Request)."""
    g = p.add_argument_group("request")
    g.add_argument("--grid", default="paper72", help="candidates: paper72 (default), global, or n:first:window,...")
    _copy_arg(g)
    g.add_argument(
        "--restrict",
        dest="restrict_labels",
        action="append",
        help="copy only from exemplars with this label (repeatable)",
    )
    g.add_argument("--ids", help="copy only from these comma-separated exemplar ids")
    g.add_argument(
        "--like", type=Path, help="copy only from the exemplars nearest this example photo ('looks like this')"
    )
    g.add_argument("--like-k", type=int, help=f"how many exemplars --like keeps (default {LIKE_K})")
    g.add_argument(
        "--region",
        action="append",
        metavar="MASK.png:RULE",
        help="inside the white pixels of MASK.png copy only from exemplars given by RULE: "
        "ids=1,2,3 | label=NAME | like=PHOTO (repeatable; later regions win)",
    )


def _serve_args(p: argparse.ArgumentParser) -> None:
    _model_arg(p)
    _bank_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--val", type=Path, help="folder of validation photos (or input images) the page lists")
    p.add_argument(
        "--work",
        type=Path,
        help="folder for the result files the server writes (default: a temporary folder, removed at exit)",
    )
    p.add_argument(
        "--threads", type=int, default=6, help="request threads (default 6); at most 2 syntheses run at once"
    )
    _device_arg(p)


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)")
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help=f"stage-1 optimizer steps (default {DEMO_STEPS})")
    p.add_argument("--minutes", type=float, default=10.0, help="cap on stage-1 training time (default 10)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    p.add_argument("--train", type=int, default=2000, help="training images (default 2000)")
    p.add_argument("--inputs", type=int, default=6, help="held-out inputs to synthesize (default 6)")


def _pix2pix_args(p: argparse.ArgumentParser) -> None:
    _data_args(p)
    p.add_argument("--out", type=Path, required=True, help="pix2pix folder to create or resume")
    p.add_argument("--val", type=Path, help="validation data of the same kind, for PSNR of one dropout sample")
    _budget_args(p)
    p.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--ngf", type=int, default=64, help="generator channels of the first layer (default 64)")
    p.add_argument("--ndf", type=int, default=64, help="discriminator channels of the first layer (default 64)")
    p.add_argument(
        "--cache",
        type=Path,
        help="folder of prepared data (default OUT/cache; a stage-1 model's cache/ is reused as is)",
    )


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="model folder made by `pixelnn train` (with its bank)")
    _data_args(p)
    p.add_argument("--pix2pix", type=Path, help="pix2pix folder made by `pixelnn train-pix2pix` on the same data")
    p.add_argument("--out", type=Path, required=True, help="output folder (report.md, report.json, figures/, cache/)")
    _bank_arg(p)
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the Rand-1 picks, pix2pix dropout and subsets (default 0)"
    )
    p.add_argument("--samples", type=int, default=72, help="pix2pix outputs per input (default 72, as PixelNN's grid)")
    p.add_argument(
        "--face-normals",
        choices=["auto", "on", "off"],
        default="auto",
        help="score outputs of faces by the normals estimated on them against the photo's (the paper's six "
        "angular statistics) and by whether a face is found (needs `make setup-normals`); "
        "auto (default): on for models of the normals signal",
    )
    _device_arg(p)
    _copy_arg(p)


# verb: (its help line, its examples, what adds its arguments)
VERBS = {
    "train": ("train stage 1 (and build its bank)", TRAIN_EXAMPLES, _train_args),
    "index": ("build or extend the exemplar bank of a model", INDEX_EXAMPLES, _index_args),
    "verify": (
        "check a model's bank file by file against the sha256 sums stored with it",
        VERIFY_EXAMPLES,
        _verify_args,
    ),
    "compact": ("write a compact copy (format version 2) of an older exemplar bank", COMPACT_EXAMPLES, _compact_args),
    "setup-weights": (
        "convert the backbones' installed weight packages once into checksummed safetensors in the cache "
        "($PIXELNN_CACHE/weights or ~/.cache/pixelnn/weights)",
        SETUP_WEIGHTS_EXAMPLES,
        lambda p: None,
    ),
    "convert": ("rewrite a model folder's old torch.save checkpoints as safetensors", CONVERT_EXAMPLES, _convert_args),
    "synthesize": ("many outputs and their correspondences for inputs", SYNTH_EXAMPLES, _synthesize_args),
    "serve": ("a local web app: draw or pick inputs, explore candidates and sources", SERVE_EXAMPLES, _serve_args),
    "demo": ("train, index and synthesize on an embedded dataset; writes an HTML page", DEMO_EXAMPLES, _demo_args),
    "train-pix2pix": ("train the pix2pix baseline on the same data as stage 1", PIX2PIX_EXAMPLES, _pix2pix_args),
    "evaluate": (
        "measure PixelNN as the paper does, beside stage 1, global NN and pix2pix",
        EVALUATE_EXAMPLES,
        _evaluate_args,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="pixelnn", description="PixelNN: many outputs, with their sources, for an incomplete image."
    )
    parser.add_argument("--version", action="version", version=f"pixelnn {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, (help_line, examples, add_args) in VERBS.items():
        p = verbs.add_parser(
            name, help=help_line, epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        add_args(p)
        _verbosity_args(p)
    return parser


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="model folder made by `pixelnn train`")


def _bank_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bank", type=Path, help="bank folder (default MODEL/bank)")


def _backbone_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--backbone", choices=BACKBONES, help=help_text)


def _verbosity_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("messages").add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", action="store_true", help="also show debugging messages")
    g.add_argument(
        "-q", "--quiet", action="store_true", help="show only warnings and errors (results are still written)"
    )


def log_level(args: argparse.Namespace) -> int:
    """The console's logging level for the parsed arguments: INFO unless --verbose or --quiet.

    >>> log_level(argparse.Namespace(verbose=False, quiet=True)) == logging.WARNING
    True
    """
    if getattr(args, "verbose", False):
        return logging.DEBUG
    return logging.WARNING if getattr(args, "quiet", False) else logging.INFO


def _ray_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run on a Ray cluster: 'auto' (the cluster of this machine, or a new one on it) or HEAD:PORT "
        "(needs `pip install 'pixelnn[ray]'`; every machine needs the same model and data paths)",
    )


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="cpu",
        help="where the networks and the pixel search run: cpu (default), cuda, cuda:N, or auto (cuda when present)",
    )


def _copy_arg(p) -> None:
    from .synth.coherence import COPY_MODES, DEFAULT_COPY

    p.add_argument(
        "--copy",
        choices=COPY_MODES,
        default=DEFAULT_COPY,
        help=f"how pixels are copied: eq3 (each pixel its best match, the paper's Eq. 3), coherent (a neighbour's "
        f"source when it gives up little similarity), vote (3x3 patch voting), coherent-vote, matched (coherent, then "
        f"as much voting as gives the detail of the exemplars copied from) (default {DEFAULT_COPY})",
    )


AT_LEAST_1 = (
    "limit",
    "chunk",
    "like_k",
    "batch",
    "width",
    "descriptors",
    "ngf",
    "ndf",
    "samples",
    "train",
    "inputs",
    "threads",
    "factor",
)
AT_LEAST_0 = ("steps", "epochs", "seed")
AT_MOST = {
    "width": 1024,
    "ngf": 1024,
    "ndf": 1024,
    "threads": 256,
}  # beyond: the weights or threads alone exhaust the machine
MAX_SIZE = 4096


def _check_counts(args: argparse.Namespace) -> None:
    """Numbers argparse takes but the jobs cannot use (0 or negative counts, nan or inf minutes)."""
    for name in AT_LEAST_1 + AT_LEAST_0:
        value, least = getattr(args, name, None), 1 if name in AT_LEAST_1 else 0
        if isinstance(value, int) and value < least:  # (synthesize's positional inputs are a list)
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {least}, got {value}")
    for name, most in AT_MOST.items():
        value = getattr(args, name, None)
        if value is not None and value > most:
            raise ConfigError(f"--{name} must be at most {most}, got {value}")
    _check_real(args, "minutes", positive=True)
    _check_real(args, "weight_decay", positive=False)
    _check_ranges(args)


def _check_ranges(args: argparse.Namespace) -> None:
    """--size within what fits in memory, --factor within --size, --port a port number."""
    size = getattr(args, "size", None)
    if size is not None and not 8 <= size <= MAX_SIZE:
        raise ConfigError(f"--size must be in 8..{MAX_SIZE}, got {size}")
    factor = getattr(args, "factor", None)
    if factor is not None and factor > (size or SIZE):
        raise ConfigError(f"--factor must be at most --size ({size or SIZE}), got {factor}")
    port = getattr(args, "port", None)
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {port}")


def _check_real(args: argparse.Namespace, name: str, positive: bool) -> None:
    """A finite float option: above 0 (positive) or at least 0."""
    value = getattr(args, name, None)
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        least = "above 0" if positive else "0 or more"
        raise ConfigError(f"--{name.replace('_', '-')} must be a finite number {least}, got {value}")


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as one plain 'warning: ...' line, without the source line that raised them."""
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import commands  # heavy imports (torch, faiss) only after parsing, so --help is instant

    formatwarning, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        _check_counts(args)
        with console(log_level(args)):
            getattr(commands, args.verb.replace("-", "_"))(args)
    except PixelNNError as e:
        print(f"pixelnn {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pixelnn {args.verb}: interrupted; finished files are complete, a rerun resumes", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = formatwarning
    return 0


if __name__ == "__main__":
    sys.exit(main())
