"""Each private Keras / TensorFlow hook of vae_balance.model._keras_compat still exists.

One test per hook: a Keras or TensorFlow upgrade that removes or renames one
fails here, loudly, instead of silently changing training or saving.
"""

import inspect

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as keras_tf_trainer
from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
from keras.src.trainers.trainer import Trainer
from tensorflow.python.distribute.collective_all_reduce_strategy import (
    CollectiveAllReduceExtended,
)

from vae_balance.model import _keras_compat, distribute
from vae_balance.model.networks import FusedBatchNormalization
from vae_balance.model.vae import BalancedVAE


def test_mark_built_sets_the_built_flag_keras_saving_checks():
    model = keras.Model()
    assert not model.built
    _keras_compat.mark_built(model)
    assert model.built
    source = inspect.getsource(keras.src.saving.saving_lib)
    assert "model.built" in source  # what the flag guards


def test_own_variables_are_keras_default_saved_variables():
    layer = keras.layers.Dense(3)
    layer.build((None, 2))
    source = inspect.getsource(keras.layers.Layer.save_own_variables)
    assert "self._trainable_variables + self._non_trainable_variables" in source
    own = _keras_compat.own_variables(layer)
    assert [v.path for v in own] == [v.path for v in layer.weights]


def test_model_has_the_distribute_strategy_slot_outside_a_scope():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert "_distribute_strategy" in vars(model)
    assert _keras_compat.distribute_strategy_or_none(model) is None
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        inside = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert _keras_compat.distribute_strategy_or_none(inside) is not None


def test_the_trainer_still_calls_maybe_symbolic_build():
    hook = TensorFlowTrainer._maybe_symbolic_build
    assert list(inspect.signature(hook).parameters) == [
        "self",
        "iterator",
        "data_batch",
    ]
    assert "_maybe_symbolic_build" in inspect.getsource(TensorFlowTrainer.fit)
    assert BalancedVAE._maybe_symbolic_build is (
        _keras_compat.PrebuiltTrainerHooks._maybe_symbolic_build
    )


def test_compile_still_resolves_auto_jit_through_the_hook():
    assert hasattr(Trainer, "_resolve_auto_jit_compile")
    assert "_resolve_auto_jit_compile" in inspect.getsource(Trainer.compile)
    assert BalancedVAE._resolve_auto_jit_compile is (
        _keras_compat.PrebuiltTrainerHooks._resolve_auto_jit_compile
    )


def test_multi_worker_strategy_still_has_in_multi_worker_mode():
    # Not instantiated here: a MultiWorkerMirroredStrategy configures the
    # collective runtime for the whole process (tests/test_distribute.py runs
    # it in subprocesses).
    assert callable(CollectiveAllReduceExtended._in_multi_worker_mode)
    assert "_in_multi_worker_mode" in inspect.getsource(keras_tf_trainer)
    assert _keras_compat.in_multi_worker_mode(tf.distribute.get_strategy()) is False
    assert distribute.in_multi_worker_mode() is False


def test_batch_normalization_still_stores_renorm():
    assert keras.layers.BatchNormalization(renorm=True).renorm is True
    assert _keras_compat.uses_renorm(keras.layers.BatchNormalization(renorm=True))
    layer = FusedBatchNormalization()
    assert not _keras_compat.uses_renorm(layer)
    layer.build((None, 2, 2, 3))
    x = np.ones((2, 2, 2, 3), "float32")
    assert layer._fusable(x, training=True, mask=None)
