from pathlib import Path

from pixelnn.cli import build_parser
from pixelnn.data.options import DataOptions


def test_options_from_arguments_keep_what_was_typed():
    args = build_parser().parse_args(["train", "--data", "d", "--signal", "lowres", "--factor", "4", "--out", "o"])
    opts = DataOptions.from_args(args)
    assert (opts.data, opts.signal, opts.factor, opts.size, opts.kind) == (Path("d"), "lowres", 4, 96, "lowres")
    assert opts.describe()["data"] == {"source": "d", "pairs": None, "targets": None, "labels": None}


def test_fitting_to_a_model_takes_its_size_factor_and_signal_without_touching_the_arguments():
    args = build_parser().parse_args(["index", "--model", "m", "--data", "d"])
    opts = DataOptions.from_args(args)
    fitted = opts.for_model({"signal": "edges", "factor": 8}, 64)
    assert (fitted.signal, fitted.size, fitted.factor, fitted.kind) == ("edges", 64, 8, "edges")
    assert (args.signal, args.size) == (None, None)  # the namespace is left as parsed


def test_a_size_or_factor_the_user_set_must_be_the_models():
    import pytest

    from pixelnn.errors import ConfigError

    args = build_parser().parse_args(["index", "--model", "m", "--data", "d", "--size", "96", "--factor", "4"])
    opts = DataOptions.from_args(args)
    assert opts.given == {"size", "factor"}
    assert opts.for_model({"signal": "lowres", "factor": 4}, 96).size == 96  # the same as the model's: fine
    with pytest.raises(ConfigError, match="--factor 4: this model was trained with factor 8"):
        opts.for_model({"signal": "lowres", "factor": 8}, 96)
    with pytest.raises(ConfigError, match="--size 96: this model was trained with size 64"):
        opts.for_model({"signal": "lowres", "factor": 4}, 64)


def test_pair_files_keep_their_kind_and_a_given_signal_is_kept():
    pairs = DataOptions(data=Path("d"), pairs="BtoA").for_model({"signal": "lowres", "factor": 8}, 96)
    assert (pairs.signal, pairs.kind) == (None, "pairs")
    given = DataOptions(data=Path("d"), signal="canny").for_model({"signal": "lowres"}, 96)
    assert given.kind == "canny"  # the caller refuses the mismatch
