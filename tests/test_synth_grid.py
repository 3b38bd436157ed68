import re

import pytest

from pixelnn.errors import ConfigError
from pixelnn.search.pixel_match import WHOLE
from pixelnn.synth.grid import (
    MAX_SEARCH_BYTES,
    Spec,
    check_budget,
    fitted,
    global_matches,
    neighbours_needed,
    paper72,
    parse,
    search_bytes,
)
from pixelnn.synth.request import Request


def test_authors_grid_has_72_distinct_candidates_over_11_neighbours():
    g = paper72()
    assert len(g) == 72 and len(set(g)) == 72
    assert {s.window for s in g} == {1, 3, 5, WHOLE}
    assert neighbours_needed(g) == 11
    assert Spec(1, 1, 1) in g and Spec(5, 7, WHOLE) in g


def test_parse_user_grid_and_names():
    assert parse("5:1:3, 10:1:whole") == [Spec(5, 1, 3), Spec(10, 1, WHOLE)]
    assert parse("paper72") == paper72()
    assert parse("global") == global_matches()
    assert list(Spec(3, 2, 1).ranks) == [1, 2, 3]


@pytest.mark.parametrize(
    "bad", ["5:1", "a:b:c", "0:1:3", "1:0:3", "1:1:-2", "1:1:0", "²:1:1", "1:١:1", "1_0:1:1", "1:1:3²"]
)
def test_parse_rejects_bad_items_with_a_message(bad):
    with pytest.raises(ConfigError, match="bad candidate"):
        parse(bad)


def test_windows_of_2s_minus_1_or_more_are_the_whole_image():
    assert fitted(parse("1:1:99999,5:1:129,2:1:63,2:1:62,1:1:whole"), 32) == [
        Spec(1, 1, WHOLE),
        Spec(5, 1, WHOLE),
        Spec(2, 1, WHOLE),
        Spec(2, 1, 62),
        Spec(1, 1, WHOLE),
    ]


@pytest.mark.parametrize(
    "grid, words",
    [
        (",".join(["1:1:1"] * 501), "candidates 501; the limit is 500"),
        ("1:300:1", "neighbour rank 300; the limit is 200"),
        (",".join(f"1:1:{w}" for w in range(1, 14)), "distinct window sizes 13; the limit is 12"),
    ],
)
def test_a_request_over_the_limits_is_refused_naming_limit_and_value(grid, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        Request.make(grid=grid)


def test_budget_refuses_a_grid_whose_search_needs_too_much_memory():
    Request.make(grid="5:1:129")  # within a request's limits; its memory depends on the model's size
    with pytest.raises(ConfigError, match=re.escape("GiB for 96x96 outputs; the limit is 4 GiB")):
        check_budget(fitted(parse("5:1:129"), 96), 96, 32, fast=True)


def test_budget_estimate_grows_with_the_window_and_passes_the_default_grid():
    assert search_bytes(parse("5:1:129"), 96, 32, fast=True) > MAX_SEARCH_BYTES
    assert search_bytes(parse("5:1:3"), 96, 32, fast=True) < search_bytes(parse("5:1:9"), 96, 32, fast=True)
    for fast, dim in ((True, 32), (False, 1472)):
        check_budget(fitted(paper72(), 96), 96, dim, fast)  # no error
        assert search_bytes(paper72(), 96, dim, fast) < MAX_SEARCH_BYTES


def test_fast_search_estimate_is_not_below_the_measured_peak():
    # measured with `pixelnn serve` on the demo model (64x64, 32-d descriptors), one request each:
    # 50:1:51 peaked 8.9 GB above the idle server, 50:1:31 3.6 GB (docs in the closing note of #12)
    from pixelnn.synth.grid import Spec, search_bytes

    assert search_bytes([Spec(50, 1, 51)], 64, 32, fast=True) >= 8.9e9
    assert search_bytes([Spec(50, 1, 31)], 64, 32, fast=True) >= 3.6e9


def test_exact_search_estimate_is_not_below_the_measured_peak():
    # measured in one process on the demo model forced to the exact search (64x64, 1472-d hypercolumns):
    # 50:1:11, 50:1:31 and 50:1:whole each peaked 2.35-2.39 GiB above the loaded model
    from pixelnn.synth.grid import Spec, search_bytes

    for window in (11, 31, 0):
        assert search_bytes([Spec(50, 1, window)], 64, 1472, fast=False) >= 2.39 * 2**30
