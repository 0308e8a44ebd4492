"""Every private Keras / TensorFlow hook the package relies on, in one place.

Each hook says why it is needed, which upstream code it relies on (paths in
the keras-team/keras and tensorflow/tensorflow repositories, as of the floors
in setup.cfg: Keras 3.15, TensorFlow 2.21) and when it can go.
tests/test_keras_compat.py checks that each one still exists in the installed
Keras and TensorFlow, so an upgrade that removes one fails loudly there
rather than silently in training.

=========================  ==================================================
hook                       used by
=========================  ==================================================
``mark_built``             BalancedVAE, TwoStageSampler (``__init__``)
``own_variables``          BalancedVAE.save_own_variables / load_own_variables
``PrebuiltTrainerHooks``   BalancedVAE (``_maybe_symbolic_build``,
                           ``_distribute_strategy``,
                           ``_resolve_auto_jit_compile``)
``in_multi_worker_mode``   distribute.in_multi_worker_mode (BalancedVAE logs)
``uses_renorm``            networks.FusedBatchNormalization
=========================  ==================================================
"""

import tensorflow as tf


def mark_built(model):
    """Marks a model whose sub-networks are built as built itself.

    Why: ``Layer.built`` only becomes True through ``build()`` or a first
    call. A subclassed model holding already-built functional networks is
    otherwise "unbuilt", and ``keras.saving`` (keras/src/saving/saving_lib.py,
    ``save_model`` / ``load_model``) then warns and, when reloading, silently
    drops the optimizer state.

    Upstream: keras/src/layers/layer.py (``Layer.built``, ``build_wrapper``).
    ``built`` is a public attribute, but assigning it is not a documented API.

    Removal: when Keras infers a subclassed model's built state from its
    built sub-layers (not the case in Keras 3.15).

    Args:
        model: the `keras.Model` to mark.
    """
    model.built = True


def own_variables(layer):
    """The variables a layer created itself (``add_weight``), not its children's.

    Why: ``BalancedVAE.save_own_variables`` stores its balancing state with
    the seed generator's state appended, so it must list exactly the variables
    Keras' default ``save_own_variables`` would store, in the same order.

    Upstream: keras/src/layers/layer.py, ``Layer.save_own_variables`` and
    ``Layer._check_load_own_variables`` (both read
    ``self._trainable_variables + self._non_trainable_variables``).

    Removal: when Keras exposes a layer's own (non-recursive) variables
    publicly, or lets a layer add extra state to its saved variables.

    Args:
        layer: a `keras.layers.Layer`.

    Returns:
        A new list: the layer's own trainable, then non-trainable variables.
    """
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def distribute_strategy_or_none(model):
    """The strategy the model was created under, or None outside one.

    Upstream: keras/src/backend/tensorflow/trainer.py (``TensorFlowTrainer.
    __init__`` sets ``_distribute_strategy`` to None outside a strategy's
    scope; the public ``distribute_strategy`` property never returns None).

    Removal: with `PrebuiltTrainerHooks`.

    Args:
        model: a `keras.Model` (TensorFlow backend).
    """
    return getattr(model, "_distribute_strategy", None)


class PrebuiltTrainerHooks:
    """Trainer overrides for a model built at construction (mix in first).

    For models that are built in ``__init__`` (`mark_built`), use no compiled
    loss or metrics and check their inputs with ``tf.debugging`` assertions,
    as BalancedVAE does.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Builds only the optimizer under a strategy.

        Why: under a strategy Keras 3 averages the replicas' first batches
        with ``strategy.reduce`` to build the model symbolically, and crashes
        when the global batch does not split evenly (100 images on 8 GPUs).
        A model built at construction with no compiled loss or metrics only
        needs its optimizer built, in the strategy's scope.

        Upstream: keras/src/backend/tensorflow/trainer.py,
        ``TensorFlowTrainer._maybe_symbolic_build`` (called by ``fit``,
        ``evaluate`` and ``predict``).

        Removal: when Keras skips the symbolic build of built models, or
        builds from one replica's batch.
        """
        if distribute_strategy_or_none(self) is None:
            return super()._maybe_symbolic_build(iterator, data_batch)
        with self.distribute_strategy.scope():
            if self.optimizer is not None and not self.optimizer.built:
                self.optimizer.build(self.trainable_variables)

    def _resolve_auto_jit_compile(self):
        """``compile(jit_compile="auto")`` resolves to False (no XLA).

        Why: XLA silently drops ``tf.debugging`` assertions (the NaN and range
        checks of BalancedVAE's inputs) and "auto" turns XLA on wherever a GPU
        is present. XLA stays available on explicit ``jit_compile=True``.

        Upstream: keras/src/trainers/trainer.py,
        ``Trainer._resolve_auto_jit_compile`` (called by ``compile``).

        Removal: when ``compile`` offers a per-model default for "auto", or
        the checks no longer rely on assertions XLA drops.
        """
        return False


def in_multi_worker_mode(strategy):
    """Whether a MultiWorkerMirroredStrategy really spans several workers.

    Why: without ``TF_CONFIG`` a MultiWorkerMirroredStrategy runs as a local
    strategy; only in multi-worker mode does Keras 3 reduce the logs of
    ``fit`` with ``strategy.reduce(..., axis=0)``, which fails on scalars
    (https://github.com/tensorflow/tensorflow/issues/72388). Keras itself
    decides with this same private call.

    Upstream: tensorflow/python/distribute/collective_all_reduce_strategy.py
    (``CollectiveAllReduceExtended._in_multi_worker_mode``), read by
    keras/src/backend/tensorflow/trainer.py
    (``_collective_all_reduce_multi_worker``).

    Removal: when tensorflow/tensorflow#72388 is fixed (Keras reduces scalar
    logs), together with the reshape in BalancedVAE's logs.

    Args:
        strategy: a `tf.distribute.Strategy`.
    """
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)()
    )


def uses_renorm(layer):
    """Whether a BatchNormalization layer uses batch renormalisation.

    Why: ``FusedBatchNormalization`` leaves renorm to the parent's path.
    ``renorm`` is a constructor argument stored as an attribute, not a
    documented property; Keras versions before it existed have none (False).

    Upstream: keras/src/layers/normalization/batch_normalization.py
    (``BatchNormalization.__init__`` sets ``self.renorm``).

    Removal: once the attribute is documented (it exists in every version
    allowed by setup.cfg's floor, Keras 3.15), read ``layer.renorm``.

    Args:
        layer: a `keras.layers.BatchNormalization`.
    """
    return bool(getattr(layer, "renorm", False))
