"""The paper's learning-rate staircase: the public schedule and the job's rule."""

import keras
import numpy as np
import pytest

import vae_balance
from vae_balance.training import callbacks


def test_the_staircase_schedule_halves_per_epochs_and_round_trips():
    schedule = vae_balance.StaircaseSchedule(1e-3, lr_epochs=2, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 19, 20, 39, 40, 59, 60)]
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 1.25e-4])
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule)
    )
    assert float(again(40)) == float(schedule(40))
    # The job's per-epoch callback applies the same rule.
    job = callbacks.staircase(1e-3, 2)
    assert [job(e) for e in (0, 1, 2, 5, 6)] == pytest.approx(
        [rates[0], rates[1], rates[2], rates[4], rates[6]]
    )
    with pytest.raises(ValueError, match="positive"):
        vae_balance.StaircaseSchedule(1e-3, lr_epochs=0, steps_per_epoch=10)
