"""What each CLI verb does with its parsed arguments (argument parsing lives in cli.py)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from .data.options import SIZE, DataOptions
from .data.prepare import Prepared, load_prepared, prepare, save_prepared
from .data.sources import pair_files, paired_folders, photo_folder, scan_images
from .errors import BankError, ConfigError, DataError
from .features import backbones
from .hashing import json_hash
from .model_folder import ModelFolder
from .regress.train import TrainConfig
from .report.batch import Batch, Job, folder_names
from .synth.pipeline import PixelNN
from .synth.request import Request
from .workflow import (
    convert_folder,
    index_arrays,
    index_samples,
    report_training,
    synthesize_batch,
    train_folds,
    train_run,
)

log = logging.getLogger(__name__)  # the CLI shows INFO on stdout (cli.main, logs.console)


def _samples(opts: DataOptions, root: Path, labels):
    if not Path(root).is_dir():
        raise DataError(f"{root}: data folder not found")
    if opts.targets:
        return paired_folders(root, opts.targets, labels=labels)
    if opts.pairs:
        return pair_files(root, opts.pairs, labels=labels)
    if not opts.signal:
        raise ConfigError(
            f"{root} is a folder of photos: say which input to make from them with --signal lowres|edges|canny"
        )
    return photo_folder(root, labels=labels)


def load_data(opts: DataOptions, root: Path, labels=None, cache_dir: Path | None = None) -> Prepared:
    """Samples from `root` as described by the data options, prepared once and cached by content."""
    samples = _samples(opts, root, labels)[: opts.limit]
    files = [(s.name, s.label, s.target.stat().st_size) for s in samples]
    key = json_hash(
        [
            str(Path(root).resolve()),
            str(opts.targets),
            opts.pairs,
            opts.kind,
            opts.size,
            opts.factor,
            str(labels),
            files,
        ],
        length=12,
    )
    cache = Path(cache_dir) / f"data-{key}.npz" if cache_dir else None
    if cache and cache.exists():
        return load_prepared(cache)
    signal = None if opts.kind in ("pairs", "folders") else opts.kind
    prepared, _ = prepare(samples, size=opts.size, signal=signal, factor=opts.factor)
    if cache:
        save_prepared(cache, prepared)
    return prepared


def _check_kind(opts: DataOptions, config: dict) -> None:
    """Refuse data whose kind differs from what the model was trained on."""
    if opts.kind != config["signal"]:
        raise ConfigError(f"this model was trained on {config['signal']!r} inputs, the data options give {opts.kind!r}")


def _train_data(args, opts: DataOptions, cache: Path) -> tuple[Prepared, Prepared | None]:
    """The training data (and the validation data with --val) of a training verb, with a line about them."""
    t0 = time.time()
    data = load_data(opts, opts.data, opts.labels, cache)
    val = load_data(opts, args.val, None, cache) if args.val else None
    log.info(
        f"data: {len(data.y)} training pairs, input {data.x.shape[1:]} -> output {data.y.shape[1:]}  "
        f"({time.time() - t0:.0f} s)"
    )
    return data, val


def train(args) -> None:
    t0 = time.time()
    if args.folds is not None and args.folds < 2:
        raise ConfigError(f"--folds must be at least 2 (got {args.folds})")
    _output_folder(args.out)
    opts = DataOptions.from_args(args)
    data, val = _train_data(args, opts, ModelFolder(args.out).cache)
    cfg = TrainConfig(
        minutes=args.minutes,
        steps=args.steps,
        epochs=args.epochs,
        batch=args.batch,
        weight_decay=args.weight_decay,
        precision=args.precision,
    )
    config = {**opts.describe(), "backbone": args.backbone or backbones.DEFAULT}
    held_out = (val.x, val.y) if val else None
    metrics = train_run(args.out, data.x, data.y, config, cfg, width=args.width, val=held_out)
    log.info("\n".join(report_training(metrics)))
    if args.folds:
        folds = train_folds(args.out, data.x, data.y, config, cfg, args.folds, width=args.width, val=held_out)
        log.info("\n".join(f"fold {k + 1}: " + report_training(m)[0] for k, m in enumerate(folds)))
    if not args.no_index:
        rebuild_bank(args.out, data, args.descriptors)
    log.info(f"model folder: {args.out}  ({(time.time() - t0) / 60:.1f} min)")


def rebuild_bank(run: Path, data: Prepared, descriptors: int | None = None) -> None:
    """Build run/bank from scratch next to the old one, then swap (the old bank survives a failure)."""
    folder = ModelFolder(run)
    manifest = folder.swap_bank(
        lambda fresh: index_arrays(run, data.x, data.y, data.names, data.labels, bank=fresh, descriptors=descriptors)
    )
    log.info(f"bank: {manifest['count']} exemplars in {folder.bank()}")


def index(args) -> None:
    """Add a data folder's samples to the bank, read and computed one chunk at a time (never all of them
    in memory: index keeps no prepared-data cache), on this machine or with --ray on a Ray cluster."""
    config = ModelFolder(args.model).config()
    opts = DataOptions.from_args(args)
    opts = opts.for_model(config, config.get("size", opts.size))  # inputs must fit the model
    _check_kind(opts, config)
    samples = _samples(opts, opts.data, opts.labels)[: opts.limit]
    manifest = index_samples(
        args.model,
        samples,
        opts.size,
        None if opts.kind in ("pairs", "folders") else opts.kind,
        opts.factor,
        backbone=args.backbone,
        bank=args.bank,
        descriptors=args.descriptors,
        allow_duplicates=args.allow_duplicates,
        chunk=args.chunk,
        ray=args.ray,
    )
    log.info(
        f"bank: {manifest['count']} exemplars in {len(manifest['shards'])} shard(s) "
        f"at {args.bank or ModelFolder(args.model).bank()}"
    )


def verify(args) -> None:
    """Open the model's bank (every check of loading) and recompute each array file's sha256."""
    from .bank import store
    from .bank.bank import Bank
    from .bank.global_index import verify_index

    folder = ModelFolder(args.model)
    folder.config()  # a clear error when it is not a model folder
    root = args.bank or folder.bank()
    bank = Bank.open(root)
    problems, unhashed = store.verify_bank(root, bank.manifest)
    problems += verify_index(root)
    if unhashed:
        log.info(
            f"verify: {len(unhashed)} shard(s) have no stored sha256 sums (written by an older PixelNN), "
            f"so only their sizes, shapes and types were checked: {', '.join(unhashed)}"
        )
    if problems:
        raise BankError(
            f"bank {root}: {len(problems)} file(s) differ from what was written:\n  " + "\n  ".join(problems)
        )
    checked = len(bank.manifest["shards"]) - len(unhashed)
    log.info(f"verify: bank {root} is intact ({len(bank)} exemplars; {checked} shard(s) checked file by file)")


def compact(args) -> None:
    """A compact (version 2) copy of a version-1 bank; says how much smaller it is."""
    from .bank.compact import compact_bank

    manifest = compact_bank(args.bank, args.out)
    before, after = (_folder_bytes(p) / max(manifest["count"], 1) / 1024 for p in (args.bank, args.out))
    log.info(
        f"compact: {manifest['count']} exemplars; {before:.0f} KB per exemplar in {args.bank}, "
        f"{after:.0f} KB in {args.out}"
    )


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def setup_weights(args) -> None:
    """Convert the VGG-16/HED and EfficientNet-Lite0 weights into the cache (see features/weights.py)."""
    from .features.backbones import setup_weights

    for line in setup_weights():
        log.info(f"setup-weights: {line}")


def convert(args) -> None:
    """Rewrite the old torch.save checkpoints of a folder as safetensors (see workflow.convert_folder)."""
    for line in convert_folder(args.folder, keep_old=args.keep_old, trust_pickle=args.trust_pickle):
        log.info(f"convert: {line}")


def _image_files(paths: list[Path]) -> list[Path]:
    """Files named, and image files under folders named (hidden ones skipped, as --data does)."""
    files = []
    for p in paths:
        if p.is_dir():
            files += list(scan_images(p).values())
        elif p.exists():
            files.append(p)
        else:
            raise ConfigError(f"{p}: no such file or folder")
    if not files:
        raise ConfigError(f"no image files in {', '.join(map(str, paths))}")
    return files


def _output_folder(out: Path) -> None:
    """Make sure `out` is (or can become) a writable folder, before any work."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: the folder is not writable")


def synthesize(args) -> None:
    """Synthesize input files or a data folder's samples into --out, here or with --ray on a Ray cluster;
    inputs whose result folder is complete (same settings, same input) are skipped (report/batch.py)."""
    _refuse_ignored(args)
    _outside_model(args.out, args.model, *([args.bank] if args.bank else []))
    config = ModelFolder(args.model).config()
    opts = DataOptions.from_args(args).for_model(config, config.get("size", SIZE))  # refuses another --size
    _output_folder(args.out)
    model = PixelNN.load(args.model, args.bank, search=args.search, device=args.device)
    request = Request.from_cli(args, model.model.cfg.size)
    model.checked_grid(request.grid)  # a ConfigError now, before any input is read
    prep = None
    if args.data:
        samples = _samples(opts, opts.data, None)[: opts.limit]
        prep = (opts.size, None if opts.kind in ("pairs", "folders") else opts.kind, opts.factor)
        jobs = [Job(f, s.name, sample=s) for f, s in zip(folder_names([s.name for s in samples]), samples)]
    elif args.inputs:
        files = _image_files(args.inputs)[: args.limit]
        jobs = [Job(f, p.name, file=p) for f, p in zip(folder_names([p.name for p in files]), files)]
    else:
        raise ConfigError("give input images, or --data with a folder of validation data")
    batch = Batch.make(model, args.out, request, prep, bool(args.from_photo))
    pages = synthesize_batch(model, batch, jobs, ray=args.ray)
    log.info(f"wrote {len(pages)} result pages; open {args.out / 'index.html'}")


def _refuse_ignored(args) -> None:
    """Options of synthesize that cannot apply together, refused before any work."""
    if args.data and args.inputs:
        raise ConfigError("give input images or --data, not both (with --data the positional inputs would be unused)")
    if args.data and args.from_photo:
        raise ConfigError(
            "--from-photo is for positional inputs; --data already makes the model's input from its photos"
        )
    if args.labels:
        raise ConfigError(
            "--labels names the labels of training data; to copy only from exemplars with a label, use --restrict"
        )
    if args.targets and not args.data:
        raise ConfigError("--targets pairs a --data folder of inputs with photos; give --data too")


def _outside_model(out: Path, *folders: Path) -> None:
    """Refuse an --out inside (or equal to) the model folder or its bank: results must not land in the model."""
    where = Path(out).resolve()
    for folder in folders:
        folder = Path(folder).resolve()
        if where == folder or folder in where.parents:
            raise ConfigError(f"--out {out} is inside the model folder {folder}: write results elsewhere")


def _need_extra(modules: tuple[str, ...], extra: str, verb: str) -> None:
    """A clear error when an optional dependency group (pyproject's extras) is not installed."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"`pixelnn {verb}` needs {', '.join(missing)}, which is not installed: "
            f"install it with `pip install 'pixelnn[{extra}]'` (or `make setup`)"
        )


def serve(args) -> None:
    _need_extra(("flask", "waitress"), "serve", "serve")
    from .serve.app import LOOPBACK_HOSTS, create_app
    from .serve.server import serve_forever
    from .serve.workdir import work_folder

    model = PixelNN.load(args.model, args.bank, device=args.device)
    with work_folder() as tmp:  # locked while we run; a killed server's folder goes at the next start
        work = args.work or Path(tmp)
        loopback = args.host == "localhost" or args.host.startswith("127.")
        app = create_app(
            model, val=args.val, work=work, trusted_hosts=[*LOOPBACK_HOSTS, args.host] if loopback else None
        )
        if not loopback:
            log.warning(f"listening on {args.host}: anyone who can reach this machine can use the app")
        serve_forever(app, args.host, args.port, threads=args.threads, work=work)


def demo(args) -> None:
    from .demo import run_demo

    run_demo(
        args.out,
        steps=args.steps,
        minutes=args.minutes,
        n_train=args.train,
        n_inputs=args.inputs,
        precision=args.precision,
    )


def train_pix2pix(args) -> None:
    from .baselines.pix2pix.run import train_run as train_pix2pix_run
    from .baselines.pix2pix.train import Pix2PixTrainConfig

    t0 = time.time()
    _output_folder(args.out)
    opts = DataOptions.from_args(args)
    data, val = _train_data(args, opts, args.cache or args.out / "cache")
    cfg = Pix2PixTrainConfig(
        minutes=args.minutes, steps=args.steps, epochs=args.epochs, batch=args.batch, precision=args.precision
    )
    metrics = train_pix2pix_run(
        args.out, data.x, data.y, opts.describe(), cfg, ngf=args.ngf, ndf=args.ndf, val=(val.x, val.y) if val else None
    )
    for split, m in metrics.items():
        log.info(f"{split}: " + ", ".join(f"{k} {v:.2f} dB" for k, v in m.items()))
    log.info(f"pix2pix folder: {args.out}  ({(time.time() - t0) / 60:.1f} min)")


def evaluate(args) -> None:
    _need_extra(("matplotlib",), "eval", "evaluate")
    from .baselines.pix2pix.checkpoint import load_generator
    from .evaluate.run import evaluate_to_folder

    if args.labels:
        raise ConfigError("--labels names the labels of training data; evaluate scores every input it is given")
    _outside_model(args.out, args.model, *([args.bank] if args.bank else []))
    _output_folder(args.out)
    model = PixelNN.load(args.model, args.bank, device=args.device)
    opts = DataOptions.from_args(args).for_model(model.config, model.model.cfg.size)
    _check_kind(opts, model.config)
    data = load_data(opts, opts.data, None, args.out / "cache")
    generator = load_generator(args.pix2pix) if args.pix2pix else None
    meta = {
        "model": str(args.model),
        "pix2pix": str(args.pix2pix) if args.pix2pix else None,
        "data": str(args.data),
        "copy": args.copy,
    }
    faces = args.face_normals == "on" or (args.face_normals == "auto" and model.config["signal"] == "normals")
    ev = evaluate_to_folder(
        model,
        data.x,
        data.y,
        data.names,
        args.out,
        generator=generator,
        seed=args.seed,
        n_samples=args.samples,
        meta=meta,
        copy=args.copy,
        faces=faces,
    )
    for row in ev.report["methods"].values():
        cells = ", ".join(
            f"{k} {v:.3f}/{row['top1'][k]:.3f}/{row['oracle'][k]:.3f}"
            for k, v in row["rand1"].items()
            if None not in (v, row["top1"][k], row["oracle"][k])
        )
        log.info(f"{row['label']:>18}: {cells}")
    log.info(f"wrote {args.out / 'report.md'}, {args.out / 'report.json'} and {len(ev.figures)} figures")
