from itertools import islice

from dockyard.cli.polling import poll_delays


def test_a_wait_looks_again_soon_then_less_and_less_often_up_to_its_longest_pause() -> None:
    assert list(islice(poll_delays(2.0), 7)) == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_a_longest_pause_below_the_first_is_kept() -> None:
    assert list(islice(poll_delays(0.05), 3)) == [0.05, 0.05, 0.05]
