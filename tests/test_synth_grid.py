import pytest

from pixelnn.errors import ConfigError
from pixelnn.search.pixel_match import WHOLE
from pixelnn.synth.grid import Spec, authors_72, global_matches, neighbours_needed, parse


def test_authors_grid_has_72_distinct_candidates_over_11_neighbours():
    g = authors_72()
    assert len(g) == 72 and len(set(g)) == 72
    assert {s.window for s in g} == {1, 3, 5, WHOLE}
    assert neighbours_needed(g) == 11
    assert Spec(1, 1, 1) in g and Spec(5, 7, WHOLE) in g


def test_parse_user_grid_and_names():
    assert parse("5:1:3, 10:1:whole") == [Spec(5, 1, 3), Spec(10, 1, WHOLE)]
    assert parse("paper72") == authors_72()
    assert parse("global") == global_matches()
    assert list(Spec(3, 2, 1).ranks) == [1, 2, 3]


@pytest.mark.parametrize("bad", ["5:1", "a:b:c", "0:1:3", "1:0:3", "1:1:-2"])
def test_parse_rejects_bad_items_with_a_message(bad):
    with pytest.raises(ConfigError, match="bad candidate"):
        parse(bad)
