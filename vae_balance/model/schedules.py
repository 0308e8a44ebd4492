"""The paper's learning-rate staircase, as a Keras schedule.

The learning rate is halved every ``lr_epochs`` epochs (paper-notes section
4). `staircase_rate` states the rule once; `StaircaseSchedule` applies it per
optimizer step for ``model.fit`` users, and the training job's per-epoch
callback (`vae_balance.training.callbacks.staircase`) applies the same rule.
"""

import keras


def staircase_rate(learning_rate, lr_epochs, epoch):
    """``learning_rate * 0.5 ** (epoch // lr_epochs)``."""
    return float(learning_rate * 0.5 ** (int(epoch) // int(lr_epochs)))


@keras.saving.register_keras_serializable(package="vae_balance")
class StaircaseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate halved every ``lr_epochs`` epochs.

    Args:
        learning_rate: the initial rate.
        lr_epochs: epochs between halvings.
        steps_per_epoch: optimizer steps per epoch (training images // batch).

    Example:

    >>> schedule = StaircaseSchedule(1e-4, lr_epochs=250, steps_per_epoch=500)
    >>> vae.compile(optimizer=paper_adam(schedule))
    """

    def __init__(self, learning_rate, lr_epochs, steps_per_epoch):
        if lr_epochs <= 0 or steps_per_epoch <= 0:
            raise ValueError(
                "lr_epochs and steps_per_epoch must be positive, got "
                f"{lr_epochs} and {steps_per_epoch}."
            )
        self.learning_rate = float(learning_rate)
        self.lr_epochs, self.steps_per_epoch = int(lr_epochs), int(steps_per_epoch)

    def __call__(self, step):
        epoch = keras.ops.floor_divide(
            keras.ops.cast(step, "int64"), self.steps_per_epoch
        )
        halvings = keras.ops.cast(epoch // self.lr_epochs, "float32")
        return self.learning_rate * keras.ops.power(0.5, halvings)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "lr_epochs": self.lr_epochs,
            "steps_per_epoch": self.steps_per_epoch,
        }
