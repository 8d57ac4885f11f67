"""CTC: ``ctc_loss`` (PyTorch's semantics) and ``ctc`` (Keras 3's) against the float64
recursion of tests/sequence_references.py, which is itself checked against the sum over
every alignment; the cases the generic property tests leave out (impossible alignments,
empty targets, one frame, repeated labels, long sequences in float32, every label
error); and PyTorch's and Keras's own CTC where they are installed."""

import math

import numpy as np
import pytest

import fastloss as fl
import sequence_references as ref


def _log_probs(rng, T, N, C, dtype=np.float64):
    return ref.log_softmax(rng.normal(0, 1.5, (T, N, C))).astype(dtype)


@pytest.mark.parametrize("T, C, target", [(1, 3, []), (1, 3, [2]), (3, 3, [1, 1]),
                                          (4, 3, [1, 2, 1]), (5, 2, [1]), (4, 4, [3, 3]),
                                          (2, 3, [1, 1])])
def test_the_recursion_reference_is_the_sum_over_every_alignment(T, C, target):
    lp = _log_probs(np.random.default_rng(T * 10 + C), T, 1, C)[:, 0]
    expected = ref.brute_force_nll(lp, target)
    got = ref.ctc_nll(lp, target)
    assert got == pytest.approx(expected, rel=1e-12) if math.isfinite(expected) else got == expected


@pytest.mark.parametrize("backend", ["serial", "parallel"])
def test_repeats_empty_targets_one_frame_and_impossible_alignments(backend, monkeypatch):
    from fastloss import _config
    monkeypatch.setattr(_config, "PARALLEL_THRESHOLD", 0 if backend == "parallel" else 1 << 62)
    rng = np.random.default_rng(0)
    T, N, C = 4, 5, 4
    lp = _log_probs(rng, T, N, C)
    # repeated labels (need a blank between: 3 frames), an empty target, one frame, a
    # target of 2 repeats in 2 frames (impossible), the longest possible
    targets = np.array([[2, 2, 0], [0, 0, 0], [3, 0, 0], [1, 1, 0], [1, 2, 3]])
    input_lengths = np.array([3, 4, 1, 2, 4])
    target_lengths = np.array([2, 0, 1, 2, 3])
    expected = ref.ctc_loss(targets, lp, input_lengths, target_lengths, reduction="none")
    assert np.isinf(expected[3]) and np.isfinite(np.delete(expected, 3)).all()
    value, grad = fl.ctc_loss.value_and_grad(targets, lp, input_lengths, target_lengths,
                                             reduction="none")
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    assert np.isnan(grad[:2, 3]).all() and not np.isnan(np.delete(grad, 3, axis=1)).any()
    assert (grad[input_lengths[0]:, 0] == 0).all() and (grad[1:, 2] == 0).all()
    value, grad = fl.ctc_loss.value_and_grad(targets, lp, input_lengths, target_lengths,
                                             reduction="mean", zero_infinity=True)
    kept = np.where(np.isinf(expected), 0.0, expected)
    assert value == pytest.approx(np.mean(kept / np.maximum(target_lengths, 1)), rel=1e-12)
    assert (grad[:, 3] == 0).all() and np.isfinite(grad).all()


def test_concatenated_and_padded_targets_and_unbatched_inputs_agree():
    rng = np.random.default_rng(1)
    T, N, C = 6, 3, 5
    lp = _log_probs(rng, T, N, C)
    padded = np.array([[1, 2, 0], [4, 0, 0], [3, 3, 1]])
    lengths = np.array([2, 1, 3])
    concatenated = np.array([1, 2, 4, 3, 3, 1])
    inputs = np.array([6, 5, 6])
    for reduction in ("none", "mean", "sum"):
        a = fl.ctc_loss.value_and_grad(padded, lp, inputs, lengths, reduction=reduction)
        b = fl.ctc_loss.value_and_grad(concatenated, lp, inputs, lengths, reduction=reduction)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    value, grad = fl.ctc_loss.value_and_grad(np.array([1, 2]), lp[:, 0], 6, 2, reduction="none")
    full = fl.ctc_loss.value_and_grad(padded[:1], lp[:, :1], inputs[:1], lengths[:1],
                                      reduction="none")
    assert value.shape == () and grad.shape == (T, C)
    assert value == full[0][0]
    np.testing.assert_array_equal(grad, full[1][:, 0])


def test_gradient_through_log_softmax_is_the_derivative_of_the_loss_of_logits():
    """PyTorch's CTC gradient assumes a log-softmax: pushed through one, it is the true
    derivative of the loss of the logits (central differences)."""
    rng = np.random.default_rng(2)
    T, N, C = 5, 2, 4
    z = rng.normal(0, 1.0, (T, N, C))
    targets, inputs, lengths = np.array([[1, 3], [2, 2]]), np.array([5, 4]), np.array([2, 2])

    def loss_of(z):
        return fl.ctc_loss(targets, ref.log_softmax(z), inputs, lengths, reduction="sum")
    g = fl.ctc_loss.grad(targets, ref.log_softmax(z), inputs, lengths, reduction="sum")
    # the log-softmax's backward: g - softmax * sum_c g
    through = g - np.exp(ref.log_softmax(z)) * g.sum(axis=-1, keepdims=True)
    h = 1e-6
    for index in [(0, 0, 1), (2, 1, 2), (4, 0, 0), (3, 1, 3)]:
        up, down = z.copy(), z.copy()
        up[index] += h
        down[index] -= h
        assert through[index] == pytest.approx((loss_of(up) - loss_of(down)) / (2 * h),
                                               abs=1e-7)


def test_long_sequences_in_float32_neither_overflow_nor_underflow():
    """T = 1000 frames, S = 200 labels: probabilities far below float32's range (the
    likelihood is about exp(-1500)); float64 in log space inside."""
    rng = np.random.default_rng(3)
    T, N, C, S = 1000, 2, 20, 200
    lp64 = _log_probs(rng, T, N, C)
    targets = rng.integers(1, C, (N, S))
    inputs, lengths = np.full(N, T), np.full(N, S)
    v64, g64 = fl.ctc_loss.value_and_grad(targets, lp64, inputs, lengths, reduction="none")
    v32, g32 = fl.ctc_loss.value_and_grad(targets, lp64.astype(np.float32), inputs, lengths,
                                          reduction="none")
    assert np.isfinite(v64).all() and (v64 > 1000).all()
    assert v32.dtype == np.float32 and g32.dtype == np.float32
    np.testing.assert_allclose(v32, v64, rtol=1e-5)
    np.testing.assert_allclose(g32, g64, atol=1e-5)
    expected = [ref.ctc_nll(lp64[:, n], list(targets[n])) for n in range(N)]
    np.testing.assert_allclose(v64, expected, rtol=1e-11)


def test_far_apart_states_are_each_kept():
    """Each label costs 1e4 nats and the blank nothing: at every frame the best states are
    those that emitted the fewest labels, dead ends for a target of 6 labels in 12 frames;
    the paths that finish lie 1e4 nats and more below them.  Each state's log-sum-exp
    keeps them (a shift shared by a frame would lose them to underflow: loss inf)."""
    T, C = 12, 3
    lp = np.full((T, 1, C), -1e4)
    lp[:, 0, 0] = 0.0
    target = [1, 2, 1, 2, 1, 2]
    expected = ref.ctc_nll(lp[:, 0], target)
    assert 5.9e4 < expected < 6.1e4
    for backend in ("cpu", "cuda"):
        with fl.backend(backend):
            value, grad = fl.ctc_loss.value_and_grad(np.array([target]), lp, [T], [6],
                                                     reduction="none")
        np.testing.assert_allclose(value, [expected], rtol=1e-12)
        assert np.isfinite(grad).all()


def test_an_alignment_the_scaled_recursion_drops_is_found_and_counted():
    """The CPU runs the recursion in the linear domain, each frame divided by its total,
    and drops what falls below 2**-500 of it.  Here the likeliest alignments (both labels
    in frames 0-3, blanks after: -400 nats) lie e**-400 below the all-blank prefix by
    frame 3 and are dropped from alpha; beta still holds their suffix, so the frames'
    totals disagree and the sequence runs again in log space: loss ~400, not the ~480 of
    the alignments that were left.  The gradient is checked by central differences."""
    T, C = 6, 3
    lp = np.full((T, 1, C), -200.0)
    lp[:, 0, 0] = 0.0
    lp[4:, 0, 1:] = -280.0
    target = [1, 2]
    expected = ref.ctc_nll(lp[:, 0], target)
    assert 395 < expected < 400
    value, grad = fl.ctc_loss.value_and_grad(np.array([target]), lp, [T], [2],
                                             reduction="sum")
    assert value == pytest.approx(expected, rel=1e-13)

    def surrogate(x):  # (the loss whose derivative is PyTorch's CTC gradient)
        return ref.ctc_nll(x, target) + np.exp(x).sum()
    h = 1e-4
    numeric = np.zeros((T, C))
    for index in np.ndindex(T, C):
        step = np.zeros((T, C))
        step[index] = h
        numeric[index] = (surrogate(lp[:, 0] + step) - surrogate(lp[:, 0] - step)) / (2 * h)
    np.testing.assert_allclose(grad[:, 0], numeric, atol=1e-7)


def test_scratch_kept_between_calls_leaves_no_trace():
    """alpha's scratch is kept between a thread's calls: a call after a larger one, after
    a smaller one and in another thread gives the same bits as before."""
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(11)
    calls = []
    for T, N, C, S in ((40, 3, 5, 8), (90, 6, 7, 30)):
        lp = _log_probs(rng, T, N, C, np.float32)
        calls.append((rng.integers(1, C, (N, S)), lp, np.full(N, T), rng.integers(0, S + 1, N)))

    def run(args):
        value, grad = fl.ctc_loss.value_and_grad(*args, reduction="none")
        return value.tobytes() + grad.tobytes()
    first = [run(args) for args in calls]
    assert [run(args) for args in reversed(calls)] == first[::-1]
    with ThreadPoolExecutor(1) as pool:
        assert list(pool.map(run, calls)) == first


@pytest.mark.parametrize("call, words", [
    (lambda lp: fl.ctc_loss([[1, 5]], lp, [4], [2]), ["label 5", "out of range"]),
    (lambda lp: fl.ctc_loss([[1, -1]], lp, [4], [2]), ["label -1"]),
    (lambda lp: fl.ctc_loss([[1, 0]], lp, [4], [2]), ["blank label 0"]),
    (lambda lp: fl.ctc_loss([[1, 2]], lp, [1], [2]), ["longer than its input"]),
    (lambda lp: fl.ctc_loss([[1, 2]], lp, [-1], [0]), ["input_lengths", "[0, 4]"]),
    (lambda lp: fl.ctc_loss([[1, 2]], lp, [5], [2]), ["input_lengths", "[0, 4]"]),
    (lambda lp: fl.ctc_loss([[1, 2]], lp, [4], [-1]), ["target_lengths"]),
    (lambda lp: fl.ctc_loss([[1, 2]], lp, [4], [3]), ["target_lengths", "[0, 2]"]),
    (lambda lp: fl.ctc_loss([[1, 2], [1, 2]], lp, [4], [2]), ["targets", "(2, 2)", "(4, 1, 4)"]),
    (lambda lp: fl.ctc_loss([[1, 2]], lp, [4, 4], [2]), ["input_lengths", "one length"]),
    (lambda lp: fl.ctc_loss([1, 2], lp, [4], [3]), ["concatenated", "3"]),
    (lambda lp: fl.ctc_loss([[1, 2]], lp, [4], [2], blank=4), ["blank 4"]),
    (lambda lp: fl.ctc_loss([[1, 2]], lp[..., None], [4], [2]), ["log_probs", "(4, 1, 4, 1)"]),
    (lambda lp: fl.ctc([[1, 0, 2]], lp.transpose(1, 0, 2)), ["blank", "inside a target"]),
    (lambda lp: fl.ctc([[1, 9]], lp.transpose(1, 0, 2)), ["label 9"]),
    (lambda lp: fl.ctc([[1, 2, 3, 1, 2]], lp.transpose(1, 0, 2)[:, :2]),
     ["longer than its input"]),
    (lambda lp: fl.ctc([[1, 2]], lp), ["y_true", "batch size"]),
])
def test_bad_labels_and_lengths_raise_before_any_kernel(call, words, monkeypatch):
    from fastloss.launch import Launcher

    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel ran before the argument error")
    monkeypatch.setattr(Launcher, "__init__", no_kernel)
    lp = _log_probs(np.random.default_rng(4), 4, 1, 4)
    with pytest.raises(ValueError) as info:
        call(lp)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_lengths_and_targets_must_be_integers():
    lp = _log_probs(np.random.default_rng(5), 4, 1, 4)
    with pytest.raises(TypeError, match="targets"):
        fl.ctc_loss(np.array([[1.0, 2.0]]), lp, [4], [2])
    with pytest.raises(TypeError, match="input_lengths"):
        fl.ctc_loss([[1, 2]], lp, [4.0], [2])


def test_keras_float_labels_are_truncated_as_keras_casts_them():
    x = np.random.default_rng(6).normal(size=(2, 5, 4))
    labels = np.array([[1, 2, 0], [3, 0, 0]])
    np.testing.assert_array_equal(fl.ctc.value_and_grad(labels + 0.5, x)[1],
                                  fl.ctc.value_and_grad(labels, x)[1])


@pytest.mark.cudasim
def test_cuda_kernel_matches_the_cpu():
    """The CUDA kernel (the simulator in CI): PyTorch's and Keras's layouts, an impossible
    alignment, a sequence shorter than the input, an empty target."""
    rng = np.random.default_rng(7)
    T, N, C = 5, 3, 4
    lp = _log_probs(rng, T, N, C)
    targets = np.array([[1, 1, 0], [2, 3, 1], [0, 0, 0]])
    args = (targets, lp, np.array([2, 5, 4]), np.array([2, 3, 0]))
    x = rng.normal(size=(2, 4, 3))
    labels = np.array([[1, 2], [2, 0]])
    for reduction in ("none", "mean"):
        with fl.backend("cpu"):
            expected = fl.ctc_loss.value_and_grad(*args, reduction=reduction)
            expected_keras = fl.ctc.value_and_grad(labels, x, reduction=reduction)
        with fl.backend("cuda"):
            got = fl.ctc_loss.value_and_grad(*args, reduction=reduction)
            got_keras = fl.ctc.value_and_grad(labels, x, reduction=reduction)
        for g, e in zip((*got, *got_keras), (*expected, *expected_keras)):
            np.testing.assert_allclose(np.asarray(g), e, rtol=1e-12, atol=1e-14, equal_nan=True)


# -- the peers ---------------------------------------------------------------------------


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("form", ["padded", "concatenated"])
def test_against_torch_ctc_loss(dtype, reduction, zero_infinity, form):
    """Values and the VJP of F.ctc_loss for a random cotangent: repeated labels, an
    impossible alignment, an empty target, inputs shorter than T."""
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(8)
    T, N, C = 7, 5, 4
    lp = _log_probs(rng, T, N, C, dtype)
    padded = np.array([[1, 1, 2], [3, 0, 0], [2, 2, 2], [0, 0, 0], [1, 2, 3]])
    lengths = np.array([2, 1, 3, 0, 3])
    inputs = np.array([7, 4, 4, 3, 6])  # (sequence 2 needs 5 frames: impossible)
    targets = padded if form == "padded" else np.concatenate(
        [row[:n] for row, n in zip(padded, lengths)])
    x = torch.tensor(lp, requires_grad=True)
    expected = F.ctc_loss(x, torch.tensor(targets), torch.tensor(inputs), torch.tensor(lengths),
                          reduction=reduction, zero_infinity=zero_infinity)
    go = rng.normal(size=expected.shape)
    (expected_grad,) = torch.autograd.grad(expected, x, torch.tensor(go, dtype=x.dtype))
    value, grad = fl.ctc_loss.value_and_grad(targets, lp, inputs, lengths, reduction=reduction,
                                             zero_infinity=zero_infinity, grad_output=go)
    rtol = 1e-5 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=rtol)
    np.testing.assert_allclose(grad, expected_grad.numpy(), rtol=rtol, atol=rtol * 0.1,
                               equal_nan=True)


def test_against_keras_ctc():
    """keras.losses.CTC on JAX: the value and jax.grad, with sample weights."""
    import keras_peers  # noqa: F401  (JAX and Keras, or a skip)
    from keras_peers import jax, keras

    rng = np.random.default_rng(9)
    B, T, C = 4, 9, 5
    x = rng.normal(0, 1.5, (B, T, C)).astype(np.float32)
    labels = np.array([[1, 2, 2, 0], [3, 0, 0, 0], [4, 4, 1, 2], [0, 0, 0, 0]])
    w = rng.uniform(0.5, 1.5, B).astype(np.float32)
    for reduction in ("sum_over_batch_size", "sum", "none"):
        loss = keras.losses.CTC(reduction=reduction)

        def scalar(q):
            return (loss(labels, q, sample_weight=w) * (1.0 if reduction != "none" else
                                                         np.arange(1.0, B + 1))).sum()
        expected = np.asarray(loss(labels, x, sample_weight=w))
        expected_grad = np.asarray(jax.grad(scalar)(x))
        go = None if reduction != "none" else np.arange(1.0, B + 1)
        value, grad = fl.CTC(reduction=reduction).value_and_grad(labels, x, sample_weight=w,
                                                                  grad_output=go)
        np.testing.assert_allclose(value, expected, rtol=2e-5)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
