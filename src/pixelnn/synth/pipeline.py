"""The Python API: load a trained model with its bank and synthesize many outputs for an input.

model = PixelNN.load("runs/celeba")          # or pixelnn.load("runs/celeba")
result = model.synthesize(x)                 # x: the input signal, uint8 (h, w, c)
result.candidates[0].image                   # (S, S, 3) float in [0, 1]
result.candidates[0].corr.exemplar           # (S, S) bank id each pixel was copied from
model.save("models/celeba-copy")             # a model folder that PixelNN.load opens
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..bank import store
from ..bank.bank import Bank
from ..bank.build import expected_manifest
from ..data.options import SIGNALS
from ..errors import BankError, ConfigError
from ..features.backbones import describe, describe_global, load_backbone
from ..features.hypercolumn import global_descriptor
from ..features.projection import project_taps
from ..fileio import atomic_folder
from ..model_folder import ModelFolder
from ..pixels import as_uint8_image
from ..regress import checkpoint
from ..regress.unet import UNet, predict
from ..search.fast_match import match_all
from ..search.pixel_match import match
from ..spectra import log_spectra
from ..threads import one_blas_thread, threaded
from . import grid as grids
from . import rank as ranking
from .coherence import COHERENCE_TAU, coherent, finish, uses_prior, voting
from .compose import Correspondence, choose, copied
from .control import ExemplarSet, Pool, region_owner
from .request import Request

BANK_MODES = ("copy", "reference")


@contextmanager
def timed(profile: dict[str, float] | None, step: str):
    """Add the seconds the block takes to profile[step] (no-op without a profile)."""
    if profile is None:
        yield
        return
    t0 = time.perf_counter()
    yield
    profile[step] = profile.get(step, 0.0) + time.perf_counter() - t0


@dataclass
class Candidate:
    spec: grids.Spec
    image: np.ndarray  # (S, S, 3) float32 in [0, 1]
    corr: Correspondence
    score: ranking.Score | None = None  # from the input alone, higher is better (synth/rank.py)
    voted: float | None = None  # the share of patch voting in its copy (synth/coherence.py); None: no voting


@dataclass
class Result:
    input: np.ndarray  # (h, w, c) uint8, the input signal
    stage1: np.ndarray  # (S, S, 3) float32, f(x) rounded as the bank stores it
    neighbours: np.ndarray  # (K,) bank ids of the global nearest neighbours, best first
    neighbour_sims: np.ndarray  # (K,) their cosine similarities
    candidates: list[Candidate]
    region_neighbours: list[np.ndarray] = field(default_factory=list)  # per region: its global neighbours
    notes: list[str] = field(default_factory=list)  # what was changed in the request (candidates dropped)


SEARCHES = ("auto", "exact", "fast")
# Stored float16 descriptors resolve a cosine to about 1e-3; matches closer than this to the best
# are ties, won by the nearest pixel (so a bank exemplar given as input copies itself exactly).
FLOAT16_TIE = 1e-4


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this PyTorch sees no CUDA GPU: use --device cpu (or auto)")
    return device


def _check_free(path: Path) -> None:
    """Refuse, before any work, a save target that exists and is not an empty folder."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"{path} exists and is not an empty folder: save to a new folder")


class PixelNN:
    """A trained stage 1 with its exemplar bank.

    search: 'exact' matches full hypercolumns exhaustively within every window (recomputed for the
    K neighbours); 'fast' uses the bank's stored reduced descriptors, exact block matching for
    small windows and coarse-to-fine for whole-image windows; 'auto' is fast when the bank has
    reduced descriptors.
    """

    def __init__(self, model: UNet, bank: Bank, config: dict, search: str = "auto", device: str = "cpu") -> None:
        self.device = _device(device)
        self.model = model.to(self.device)
        self.bank = bank
        self.config = config
        self.backbone_name = bank.manifest["backbone"]
        try:
            self.backbone = load_backbone(self.backbone_name).to(self.device)
        except ConfigError as e:  # the name comes from the bank's manifest
            raise BankError(f"{bank.root / store.MANIFEST}: {e}") from None
        store.check_compatible(
            bank.manifest,
            expected_manifest(model, self.backbone_name, config["signal"], bank.manifest["global_dim"]),
            bank.root,
        )
        has_desc = bool(bank.manifest.get("descriptors"))
        if search not in SEARCHES:
            raise ConfigError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
        if search == "fast" and not has_desc:
            raise ConfigError(
                f"the fast search needs a bank with reduced descriptors; rebuild {bank.root} with --descriptors 64"
            )
        self.search = "fast" if search == "fast" or (search == "auto" and has_desc) else "exact"
        self.basis = torch.from_numpy(self._projection()).to(self.device) if has_desc else None

    def _projection(self) -> np.ndarray:
        """The bank's (d, D) basis, refused unless D is this backbone's pixel descriptor length."""
        basis = self.bank.encoding.basis
        S = self.model.cfg.size
        with torch.no_grad():
            D = sum(t.shape[1] for t in self.backbone(torch.zeros(1, 3, S, S, device=self.device)))
        if basis.shape[1] != D:
            raise BankError(
                f"{self.bank.root / 'projection.npy'} has shape {basis.shape}: it projects {basis.shape[1]}-dim "
                f"descriptors, but the {self.backbone_name} backbone makes {D}-dim ones"
            )
        return basis

    @classmethod
    def load(
        cls, run: str | Path, bank: str | Path | None = None, search: str = "auto", device: str = "cpu"
    ) -> PixelNN:
        """Open a model folder (config.json, stage1.safetensors) and its bank (default: run/bank).

        device: 'cpu', 'cuda' (or 'cuda:N'), or 'auto' (CUDA when available). The networks and the
        pixel search run there; the global FAISS search and the composition stay on the CPU.
        """
        folder = ModelFolder(run)
        config = folder.config()
        model = checkpoint.load_model(folder.checkpoint)
        pixelnn = cls(model, Bank.open(Path(bank) if bank else folder.bank()), config, search, device)
        pixelnn.source = folder.root
        return pixelnn

    source: Path | None = None  # the model folder this model was loaded from (PixelNN.load), if any

    def save(self, path: str | Path, bank: str = "copy") -> Path:
        """Write this model as a new model folder that PixelNN.load(path) opens; returns its path.

        The folder is assembled next to `path` and renamed into place when complete, so `path` is
        either absent or whole. It gets:

        - config.json: this model's configuration, with the stage-1 network's;
        - stage1.safetensors: the stage-1 weights and network configuration (no optimizer state: training
          into the folder again starts a fresh budget);
        - bank='copy' (default): bank/, a copy of the exemplar bank as it was opened, that is its
          manifest, the shards it lists and projection.npy (exemplars another run added after
          loading are not included); bank='reference': bank-ref.json, the absolute path of this
          model's bank, which load follows (nothing is copied; the bank must stay there);
        - metrics.json, copied from the folder the model was loaded from, when it has one;
        - README.md, the model card, written for the new folder.

        A `path` that exists and is not an empty folder is refused (ConfigError).
        """
        if bank not in BANK_MODES:
            raise ConfigError(f"bank must be one of {', '.join(BANK_MODES)}, got {bank!r}")
        path = Path(path)
        _check_free(path)
        try:
            with atomic_folder(path) as tmp:
                self._write_folder(tmp, bank)
        except FileExistsError:  # someone else wrote there meanwhile
            raise ConfigError(f"{path} exists and is not an empty folder: save to a new folder") from None
        return path

    def _write_folder(self, root: Path, bank: str) -> None:
        """Fill the empty folder `root` with config.json, stage1.safetensors, the bank or its reference,
        metrics, card."""
        source = ModelFolder(self.source) if self.source is not None else None
        ModelFolder(root).fill(self.config, self.model, self.bank, bank, metrics_from=source)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        cfg = self.model.cfg
        return (cfg.input_size, cfg.input_size, cfg.in_channels)

    def check_input(self, x) -> np.ndarray:
        """The input signal as this model takes it, (h, w, c) uint8, from a uint8 array, a float array in
        [0, 1], grayscale or RGB, or a PIL image; a ConfigError says what is wrong with anything else."""
        shape = np.shape(x) if not hasattr(x, "mode") else None
        try:
            x = as_uint8_image(x, self.input_shape[2])
        except ValueError as e:
            raise ConfigError(
                f"this model takes {self.config['signal']} inputs of shape {self.input_shape}: {e}"
            ) from None
        if x.shape != self.input_shape:
            hint = (
                " Use --from-photo (or input_from_photo) to make one from a photo."
                if x.shape[0] > self.input_shape[0]
                else ""
            )
            raise ConfigError(
                f"this model takes {self.config['signal']} inputs of shape {self.input_shape} (uint8, or float in "
                f"[0, 1]); got shape {shape or x.shape}.{hint}"
            )
        return x

    def input_from_photo(self, photo: np.ndarray) -> np.ndarray:
        """Make this model's input signal from an RGB photo (H, W, 3) uint8 of any size."""
        from ..data.images import fit_square
        from ..data.signals import make_signal

        y = fit_square(np.asarray(photo), self.model.cfg.size)[None]
        if self.config["signal"] in ("pairs", "folders"):
            raise ConfigError("this model was trained on paired files: give it an input image, not a photo")
        return make_signal(self.config["signal"], y, factor=self.config.get("factor", 8))[0]

    def stage1(self, x: np.ndarray) -> np.ndarray:
        """f(x) as (S, S, 3) float32, rounded as the bank stores f(x_n) (float16, or 8 bits in a version-2 bank)."""
        f = predict(self.model, self.check_input(x)[None])[0].permute(1, 2, 0).numpy()
        encoding = self.bank.encoding
        return encoding.f_values(encoding.store_f(f.astype(np.float16)))

    def restrict(self, exemplars: ExemplarSet) -> np.ndarray | None:
        """Bank ids allowed by an exemplar set (labels, ids and example image intersect); None = all."""
        subset = None
        if exemplars.labels:
            subset = self.bank.ids_with_labels(list(exemplars.labels))
        if exemplars.ids is not None:
            ids = np.unique(np.asarray(exemplars.ids, dtype=np.int64))
            self.bank.check_ids(ids)
            subset = ids if subset is None else np.intersect1d(subset, ids)
        if exemplars.like is not None:
            liked = self.like_ids(exemplars.like, exemplars.like_k, subset)
            subset = liked if subset is None else np.intersect1d(subset, liked)
        if subset is not None and len(subset) == 0:
            raise ConfigError(f"the exemplar restriction {exemplars.describe()} leaves no exemplar to copy from")
        return subset

    def like_ids(self, image: np.ndarray, k: int, subset: np.ndarray | None = None) -> np.ndarray:
        """The k exemplars nearest to an example photo: "outputs that look like this".

        The photo goes through the model like a query (its input signal, then stage 1), so it is
        compared with the exemplars in the same smoothed domain; a model trained on paired files
        cannot make an input from a photo, so there the photo itself is described.
        """
        from ..data.images import fit_square

        if self.config["signal"] in SIGNALS:
            f = self.stage1(self.input_from_photo(image))
        else:
            f = fit_square(np.asarray(image), self.model.cfg.size).astype(np.float32) / 255.0
        g = describe_global(self.backbone, torch.from_numpy(f).permute(2, 0, 1)[None])  # (1, G) on the CPU
        _, ids = self.bank.search(g.numpy(), k, subset)
        return np.sort(ids[0][ids[0] >= 0])

    def synthesize(self, x: np.ndarray, request: Request | None = None, *, profile: dict | None = None, **options):
        """All candidates of a request for one input signal x, best first (a Result).

        request: a Request (synth/request.py), or its values as keyword arguments (Request.make):
            grid (default: the authors' 72), labels / ids / like (the like_k exemplars nearest an
            example photo) restricting the exemplars everywhere, regions (ExemplarSets with a mask,
            each replacing that restriction inside its mask, later ones over earlier ones), copy
            ('eq3', 'coherent', 'vote', 'coherent-vote' or 'matched'; synth/coherence.py) and rank
            (False keeps the grid's order; every candidate is scored either way).
        profile: if given, seconds spent per step are added to it.
        """
        request = Request.given(request, options)
        with one_blas_thread():
            return self._synthesize(x, request, profile)

    def _synthesize(self, x, request: Request, profile) -> Result:
        S, copy = self.model.cfg.size, request.copy
        specs = self.checked_grid(request.grid)
        sets = [
            ExemplarSet(labels=request.labels, ids=request.ids, like=request.like, like_k=request.like_k),
            *[r.checked(S) for r in request.regions],
        ]
        subsets = [self.restrict(s) for s in sets]  # validate every restriction before any heavy work
        specs, notes = self._reachable(specs, sets, subsets)
        with timed(profile, "stage 1"):
            fq = self.stage1(x)  # (S, S, 3)
        with timed(profile, "descriptors"):
            q, gq = self.describe_query(fq)
        K = grids.neighbours_needed(specs)
        windows = sorted({s.window for s in specs})
        keep = uses_prior(copy)  # the prior looks up descriptors; otherwise they are freed after matching
        pools = [self._pool(q, gq, K, subset, windows, profile, keep) for subset in subsets]
        specs = [s for s in specs if all(s.first - 1 < len(p.ids) for p in pools)]
        if not specs:
            raise ConfigError("the global search found too few exemplars for any candidate of the grid")
        with timed(profile, "candidates"):
            owner = region_owner([s.mask for s in sets], (S, S))  # (S, S) index of the set each pixel uses
            stacked = Pool(
                *(np.concatenate([getattr(p, k) for p in pools]) for k in ("ids", "sims", "f_ex", "y_ex")), {}
            )
            residual = (stacked.y_ex - stacked.f_ex).reshape(len(stacked.ids), S * S, 3)
            tables = self._sim_tables(q, pools) if uses_prior(copy) else None
            sources = log_spectra(stacked.y_ex) if copy == "matched" else None  # (K, R)
            made = threaded(
                lambda spec: self._candidate(spec, pools, stacked, residual, owner, fq, copy, tables, sources), specs
            )
        with timed(profile, "ranking"):
            x = self.check_input(x)
            candidates = self._ranked(made, x, fq, request.rank)
        base = pools[0]
        return Result(x, fq, base.ids, base.sims, candidates, [p.ids for p in pools[1:]], notes)

    def checked_grid(self, grid: list[grids.Spec] | str | None) -> list[grids.Spec]:
        """The grid (default: the authors' 72) fitted to the output size and within the memory budget of
        grid.check_budget, refused (ConfigError) before any work when it is not."""
        specs = grids.parse(grid) if isinstance(grid, str) else (list(grid or grids.paper72()))
        specs = grids.fitted(specs, self.model.cfg.size)
        grids.check_budget(specs, self.model.cfg.size, self.pixel_dim, self.search == "fast")
        return specs

    @property
    def pixel_dim(self) -> int:
        """Length of a pixel descriptor in this model's search (measured once on a blank image)."""
        if getattr(self, "_pixel_dim", None) is None:
            S = self.model.cfg.size
            q, _ = self.describe_query(np.zeros((S, S, 3), np.float32))
            self._pixel_dim = int(q.shape[-1] if self.search == "fast" else q.shape[0])
        return self._pixel_dim

    def _reachable(
        self, specs: list[grids.Spec], sets: list[ExemplarSet], subsets: list
    ) -> tuple[list[grids.Spec], list[str]]:
        """(candidates whose first neighbour rank every exemplar set has, notes): a warning (and a
        note) names those dropped, and a ConfigError says when none is left."""
        sizes = [len(self.bank) if sub is None else len(sub) for sub in subsets]
        smallest = min(sizes)
        kept = [s for s in specs if s.first <= smallest]
        if len(kept) == len(specs):
            return specs, []
        i = sizes.index(smallest)
        which = "the bank" if subsets[i] is None else f"the exemplar set {sets[i].describe()}"
        dropped = ", ".join(str(s) for s in specs if s.first > smallest)
        if not kept:
            raise ConfigError(
                f"no candidate can be made: {which} has {smallest} exemplar(s), "
                f"and every candidate starts at a higher neighbour rank ({_cut(dropped)})"
            )
        note = f"dropped candidate(s) {_cut(dropped)}: {which} has only {smallest} exemplar(s)"
        warnings.warn(note, stacklevel=3)  # points at the caller of synthesize
        return kept, [note]

    def describe_query(self, fq: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel descriptors of f(x) for this search ((D, S, S) exact, (S, S, d) fast) and its global one (1, G)."""
        image = torch.from_numpy(fq).permute(2, 0, 1)[None].to(self.device)
        if self.search == "fast":
            with torch.no_grad():
                taps = self.backbone(image)
            q = project_taps(taps, self.basis, image.shape[-2:])  # (1, S, S, d)
            # stored and read back as the exemplars are (float16, or coded), then renormalised: a bank
            # exemplar's pixel matches itself exactly
            encoding = self.bank.encoding
            q = encoding.desc_values(encoding.store_desc(q), q.shape[1])[0].to(self.device)
            return F.normalize(q, dim=-1), global_descriptor(taps).cpu()
        q, gq = describe(self.backbone, image)
        return q[0], gq.cpu()

    def _pool(
        self,
        q: torch.Tensor,
        gq: torch.Tensor,
        K: int,
        subset,
        windows: list[int],
        profile=None,
        keep_desc: bool = False,
    ) -> Pool:
        """Global neighbours within `subset` and their best matches per (window, rank)."""
        with timed(profile, "global search"):
            sims, ids = self.bank.search(gq.numpy(), K, subset)
            keep = ids[0] >= 0
            ids, sims = ids[0][keep], sims[0][keep]
        with timed(profile, "gather exemplars"):
            f_ex = self.bank.stage1(ids)  # (K, S, S, 3) float32
            y_ex = self.bank.gather("y", ids).astype(np.float32) / 255.0
            if self.search == "fast":
                E = F.normalize(self.bank.descriptors(ids).to(self.device), dim=-1)  # (K, S, S, d)
        with timed(profile, "pixel matching"):
            if self.search == "fast":
                found = match_all(q, E, windows, tie=FLOAT16_TIE)
                matches = {w: (s.cpu().numpy(), j.cpu().numpy()) for w, (s, j) in found.items()}
            else:
                e, _ = describe(self.backbone, torch.from_numpy(f_ex).permute(0, 3, 1, 2))  # (K, D, S, S)
                per_rank = [match(q, e[k], windows) for k in range(len(ids))]
                matches = {
                    w: tuple(torch.stack([m[w][i] for m in per_rank]).cpu().numpy() for i in (0, 1)) for w in windows
                }
        desc = (E if self.search == "fast" else e) if keep_desc else None
        return Pool(ids, sims, f_ex, y_ex, matches, desc)

    def _sim_tables(self, q: torch.Tensor, pools: list[Pool]) -> tuple[np.ndarray, np.ndarray]:
        """The descriptors the coherence prior compares (synth/coherence.coherent): the query's pixels
        (S*S, d) and the exemplars' (R, S*S, d) by rank, ranks counted over the pools end to end."""
        fast = self.search == "fast"
        Q = (q if fast else q.permute(1, 2, 0)).float().cpu().numpy()
        tables = [(p.desc if fast else p.desc.permute(0, 2, 3, 1)).float().cpu().numpy() for p in pools]
        table = tables[0] if len(tables) == 1 else np.concatenate(tables)  # (R, S, S, d)
        return Q.reshape(-1, Q.shape[-1]), table.reshape(len(table), -1, table.shape[-1])

    def _candidate(
        self,
        spec: grids.Spec,
        pools: list[Pool],
        stacked: Pool,
        residual: np.ndarray,
        owner: np.ndarray,
        fq: np.ndarray,
        copy: str,
        tables: tuple[np.ndarray, np.ndarray] | None,
        sources: np.ndarray | None,
    ) -> tuple[Candidate, dict[str, float]]:
        """One candidate: per pixel the best source in its pool(s), made coherent and voted as `copy`
        asks, composed; `stacked` holds every pool's exemplars end to end (ranks of pool p are offset by
        the sizes of pools before it), `residual` their y - f(x) as (K, S*S, 3) and `sources` their
        photos' log spectra (K, R) for 'matched'. Returns it with the parts of its rank score that its
        map gives (seam, match)."""
        W = fq.shape[1]
        if len(pools) == 1:
            sim, rank, j = choose(pools[0].matches, spec, len(pools[0].ids))
        else:
            sim, rank, j = (
                np.zeros(owner.shape, np.float32),
                np.zeros(owner.shape, np.int64),
                np.zeros(owner.shape, np.int64),
            )
            offset = 0
            for p, pool in enumerate(pools):
                s, r, jj = choose(pool.matches, spec, len(pool.ids))
                here = owner == p
                sim[here], rank[here], j[here] = s[here], r[here] + offset, jj[here]
                offset += len(pool.ids)
        if uses_prior(copy) and not (spec.n == 1 and spec.window == 1):  # 1:r:1 is one coherent copy already
            sim, rank, j = coherent(sim, rank, j, owner, *tables, COHERENCE_TAU)
        out = copied(fq, stacked.f_ex, stacked.y_ex, rank, j)
        weights, correction, voted = voting(copy, out, rank, j, residual, sources)
        corr = Correspondence(
            stacked.ids[rank].astype(np.int64), (j // W).astype(np.int32), (j % W).astype(np.int32), sim, weights
        )
        image = finish(out, correction)  # as compose() makes it, so the map rebuilds it exactly
        parts = {"seam": -ranking.seam_cost(rank, j, residual), "match": float(sim.mean())}
        return Candidate(spec, image, corr, voted=voted), parts

    def _ranked(self, made: list[tuple[Candidate, dict]], x: np.ndarray, fq: np.ndarray, rank: bool) -> list[Candidate]:
        """Score every candidate (its map's parts, plus its agreement with x and f(x)) and, if rank, sort best first."""
        candidates = [c for c, _ in made]
        parts = {k: np.array([p[k] for _, p in made]) for k in ("seam", "match")}
        parts = {**ranking.input_parts(np.stack([c.image for c in candidates]), x, fq), **parts}
        for c, score in zip(candidates, ranking.scores(parts)):
            c.score = score
        return [candidates[i] for i in ranking.order([c.score for c in candidates])] if rank else candidates


def _cut(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
