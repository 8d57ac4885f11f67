"""fastloss.keras: Keras models on the JAX and PyTorch backends trained with fastloss's
loss classes equal models trained with Keras's own (sample weights included); configs
round-trip.  Each backend runs in a process of its own (Keras picks it at import)."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import numpy as np
    import keras
    import fastloss.keras as flk

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5)).astype("float32")
    cases = {
        "SparseCategoricalCrossentropy": (dict(from_logits=True), rng.integers(0, 3, 64), 3),
        "MeanSquaredError": ({}, rng.standard_normal((64, 2)).astype("float32"), 2),
        "BinaryCrossentropy": (dict(from_logits=True, label_smoothing=0.1),
                               (rng.random((64, 1)) < 0.5).astype("float32"), 1),
        "Huber": (dict(delta=0.5), rng.standard_normal((64, 2)).astype("float32"), 2),
    }
    weights = rng.uniform(0.5, 2.0, 64).astype("float32")
    for name, (options, y, units) in cases.items():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"),
                                  keras.layers.Dense(units)])
        start = model.get_weights()
        trained = []
        for loss in (getattr(flk, name)(**options), getattr(keras.losses, name)(**options)):
            model.set_weights(start)
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
            model.fit(X, y, sample_weight=weights, epochs=3, batch_size=16, shuffle=False,
                      verbose=0)
            trained.append(model.get_weights())
        for a, b in zip(*trained):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
        loss = getattr(flk, name)(**options)
        config = loss.get_config()
        again = type(loss).from_config(config)
        assert again.get_config() == config
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(restored) is type(loss) and restored.get_config() == config
    print("ok")
""")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_keras_training_equals_keras_losses(backend):
    for module in ("keras", backend):  # (keras is imported in the child, on its backend)
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, NUMBA_ENABLE_CUDASIM="0")
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
