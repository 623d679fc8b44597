"""The fast golden path (model.run) and the time-stepped reference (model.run_reference) agree on random
networks, including the corner cases of docs/spec.md."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import model
from model import Conv2d, Dense, MaxPool2d, Network


def assert_same(fast: model.Result, ref: model.Result) -> None:
    assert len(fast.times) == len(ref.times)
    for n, (a, b) in enumerate(zip(fast.times, ref.times, strict=True)):
        assert a.shape == b.shape, f"layer {n}: shape {a.shape} != {b.shape}"
        diff = np.argwhere(a != b)
        assert diff.size == 0, f"layer {n}: first mismatch at {tuple(diff[0])}: fast {a[tuple(diff[0])]} " \
                               f"reference {b[tuple(diff[0])]}"
    np.testing.assert_array_equal(fast.prediction, ref.prediction)


@st.composite
def dense_case(draw):
    time_bits = draw(st.integers(2, 9))
    ns = (1 << time_bits) - 1
    t_end = draw(st.integers(1, ns - 1))
    weight_bits = draw(st.integers(2, 12))
    threshold_bits = draw(st.integers(1, 20))
    sizes = draw(st.lists(st.integers(1, 12), min_size=2, max_size=4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=False):
        mode = draw(st.sampled_from(["uniform", "extreme", "positive", "small"]))
        if mode == "extreme":
            w = rng.choice([lo, hi, 0], size=(n_in, n_out))
        elif mode == "positive":
            w = rng.integers(0, hi + 1, size=(n_in, n_out))
        elif mode == "small":
            w = rng.integers(-1, 2, size=(n_in, n_out))
        else:
            w = rng.integers(lo, hi + 1, size=(n_in, n_out))
        tmax = (1 << threshold_bits) - 1
        theta = rng.integers(1, min(tmax, max(1, hi * n_in * 3)) + 1, size=n_out)
        layers.append(Dense(weight=w, threshold=theta))
    net = Network.build(input_shape=(sizes[0],), layers=layers, time_bits=time_bits, t_end=t_end,
                        weight_bits=weight_bits, threshold_bits=threshold_bits)
    batch = draw(st.integers(1, 6))
    times_mode = draw(st.sampled_from(["any", "same", "silent", "late"]))
    if times_mode == "same":
        t_in = np.full((batch, sizes[0]), rng.integers(0, t_end + 1))
    elif times_mode == "silent":
        t_in = np.full((batch, sizes[0]), ns)
    elif times_mode == "late":
        t_in = rng.integers(max(0, t_end - 2), t_end + 1, size=(batch, sizes[0]))
    else:
        t_in = rng.integers(0, t_end + 1, size=(batch, sizes[0]))
        t_in[rng.random(t_in.shape) < 0.2] = ns
    return net, t_in


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dense_case())
def test_fast_equals_reference_dense(case):
    net, t_in = case
    assert_same(model.run(net, t_in), model.run_reference(net, t_in))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), pad=st.integers(0, 1), stride=st.integers(1, 2), k=st.integers(1, 3))
def test_fast_equals_reference_conv_pool(seed, pad, stride, k):
    rng = np.random.default_rng(seed)
    conv = Conv2d(in_shape=(2, 6, 6), weight=rng.integers(-108, 108, size=(3, 2, k, k)) + 20,
                  threshold=rng.integers(50, 2000, size=3), stride=stride, padding=pad)
    oh = conv.out_shape[1]
    assume(oh >= 2)
    pool = MaxPool2d(in_shape=conv.out_shape, kernel=2, stride=2 if oh >= 4 else 1)
    flat = int(np.prod(pool.out_shape))
    dense = Dense(weight=rng.integers(-98, 98, size=(flat, 4)) + 30, threshold=rng.integers(100, 3000, size=4))
    net = Network.build(input_shape=(2, 6, 6), layers=[conv, pool, dense], t_end=60)
    t_in = rng.integers(0, 40, size=(3, 72))
    t_in[rng.random(t_in.shape) < 0.3] = net.no_spike
    assert_same(model.run(net, t_in), model.run_reference(net, t_in))


def one_neuron(weights, theta, t_end=20, time_bits=8, weight_bits=8):
    w = np.array(weights, dtype=np.int64).reshape(-1, 1)
    return Network.build(input_shape=(len(weights),), layers=[Dense(weight=w, threshold=np.array([theta]))],
                         time_bits=time_bits, t_end=t_end, weight_bits=weight_bits)


@pytest.mark.parametrize("fn", [model.run, model.run_reference])
class TestCorners:
    """Hand-computed spike times straight from the definition."""

    def test_v_equals_theta_exactly(self, fn):
        # One input at 2 with w = 5: V[t] = 5 (t - 2); theta = 15 reached exactly at t = 5.
        net = one_neuron([5], 15)
        assert fn(net, [[2]]).times[0][0, 0] == 5
        # theta = 16 needs t = 6 (V[5] = 15 < 16).
        assert fn(one_neuron([5], 16), [[2]]).times[0][0, 0] == 6

    def test_simultaneous_inputs(self, fn):
        # Two inputs at 3 with w = 4 and 6: slope 10 from t = 4 on; theta 30 -> t = 6.
        assert fn(one_neuron([4, 6], 30), [[3, 3]]).times[0][0, 0] == 6

    def test_negative_sum_never_fires(self, fn):
        assert fn(one_neuron([10, -11], 1), [[0, 0]]).times[0][0, 0] == 255

    def test_zero_sum_never_fires(self, fn):
        assert fn(one_neuron([7, -7], 1), [[0, 0]]).times[0][0, 0] == 255

    def test_rise_then_fall(self, fn):
        # +10 at 0, -20 at 2: V = 10, 20 at t = 1, 2, then falls. theta 20 -> fires at 2; theta 21 never.
        assert fn(one_neuron([10, -20], 20), [[0, 2]]).times[0][0, 0] == 2
        assert fn(one_neuron([10, -20], 21), [[0, 2]]).times[0][0, 0] == 255

    def test_all_silent(self, fn):
        r = fn(one_neuron([100, 100], 1), [[255, 255]])
        assert r.times[0][0, 0] == 255 and r.prediction[0] == model.NO_DECISION

    def test_spike_at_t_end_and_just_after(self, fn):
        # w = 1 at 0: V[t] = t. theta = t_end fires at t_end; theta = t_end + 1 would need t_end + 1: silent.
        assert fn(one_neuron([1], 20, t_end=20), [[0]]).times[0][0, 0] == 20
        assert fn(one_neuron([1], 21, t_end=20), [[0]]).times[0][0, 0] == 255

    def test_input_at_t_end_cannot_fire(self, fn):
        assert fn(one_neuron([127], 1, t_end=20), [[20]]).times[0][0, 0] == 255
        assert fn(one_neuron([127], 1, t_end=20), [[19]]).times[0][0, 0] == 20

    def test_extreme_widths(self, fn):
        # 16-bit weights at full scale, fan-in 600: partial sums pass float32's exact range (2**24), so the
        # fast path must switch to float64; 32-bit threshold at its maximum.
        net = Network.build(input_shape=(600,), layers=[Dense(weight=np.full((600, 1), 32767),
                                                               threshold=np.array([2**32 - 1]))],
                            time_bits=16, t_end=1000, weight_bits=16, threshold_bits=32)
        # V[t] = 600 * 32767 * t >= 2**32 - 1  ->  t = ceil((2**32 - 1) / 19660200) = 219
        assert fn(net, [[0] * 600]).times[0][0, 0] == 219
        # The most negative weights never fire; the potential stays exact at -600 * 32768 * t.
        neg = Network.build(input_shape=(600,), layers=[Dense(weight=np.full((600, 1), -32768),
                                                               threshold=np.array([1]))],
                            time_bits=16, t_end=1000, weight_bits=16, threshold_bits=32)
        assert fn(neg, [[0] * 600]).times[0][0, 0] == 65535

    def test_decision_ties_lowest_index(self, fn):
        w = np.array([[5, 5, 7]])
        net = Network.build(input_shape=(1,), layers=[Dense(weight=w, threshold=np.array([10, 10, 10]))], t_end=30)
        r = fn(net, [[0]])
        np.testing.assert_array_equal(r.times[0][0], [2, 2, 2])
        assert r.prediction[0] == 0


def test_decide_rule():
    ns = 255
    out = np.array([[9, 4, 4], [ns, ns, ns], [ns, 3, 2]])
    np.testing.assert_array_equal(model.decide(out, ns), [1, -1, 2])


def test_large_layer_matches_reference_on_a_slice():
    """A 784-64-10 random network on encoded random images: the float32 matmul path must stay exact."""
    net = model.random_network("784-64-10", seed=3)
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(4, 784))
    pixels[pixels < 100] = 0
    t_in = model.encode(pixels, net.encoding, net.time_bits)
    assert_same(model.run(net, t_in), model.run_reference(net, t_in))


def test_input_times_validation():
    net = one_neuron([1, 2], 5, t_end=20)
    with pytest.raises(ValueError, match="sample 0 input 1 is 21; allowed 0..t_end=20 or NO_SPIKE=255"):
        model.run(net, [[0, 21]])
    with pytest.raises(ValueError, match="expected shape"):
        model.run(net, [[0, 1, 2]])
    with pytest.raises(ValueError, match="integer"):
        model.run(net, np.zeros((1, 2)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dense_case())
def test_grid_and_sort_paths_equal_reference(case):
    """Both exact methods of the fast dense path, forced, against the time-stepped reference."""
    from model.golden import _dense_fast

    net, t_in = case
    layer = net.layers[0]
    ref = model.run_reference(net, t_in).times[0]
    for method in ("grid", "sort"):
        got = _dense_fast(t_in, layer.weight, layer.threshold, net.t_end, net.no_spike, method=method)
        np.testing.assert_array_equal(got, ref, err_msg=f"method={method}")
