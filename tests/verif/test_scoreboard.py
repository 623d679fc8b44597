"""The scoreboard: structured mismatch records; a neuron unseen because of early exit is only correct if the
golden model spikes it after the horizon."""

from __future__ import annotations

import numpy as np

from verif.scoreboard import Mismatch, compare, first_mismatch

NS = 15


def test_records_and_horizons():
    want = [np.array([[1, 2, NS], [3, 4, 5]])]
    got = [np.array([[1, 3, NS], [3, NS, NS]])]
    score = compare(got, want, NS, horizons=[np.array([[9, 9, 9], [2, 4, 4]])], images=[10, 11])
    assert score.compared == 6
    # image 10 neuron 1 differs; image 11 neuron 1 was unseen but spikes at 4 <= horizon 4 (a miss), neuron 2
    # spikes at 5 > horizon 4 (fine: the host stopped before)
    assert score.mismatches == [Mismatch(10, 0, 1, 2, 3, NS), Mismatch(11, 0, 1, 4, NS, NS)]
    assert str(score.first) == "image 10 layer 0 neuron 1: hardware t=3, golden model t=2"
    assert not score


def test_unseen_layer_and_first_mismatch():
    assert compare([None], [np.zeros((2, 3))], NS).compared == 0
    assert first_mismatch(np.array([1, 2]), np.array([1, 2]), NS) is None
    assert first_mismatch(np.array([1, NS]), np.array([1, 2]), NS) == \
        "neuron 1: PE silent, golden model t=2 (1 of 2 neurons differ)"
