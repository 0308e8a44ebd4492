"""One way to load a trained run: its configuration, stages and samplers.

`load_run` reads a work directory (`vae_balance.workdir.Workdir`): its
``config.json``, ``stage1.keras`` and ``stage2.keras`` (or, when asked, the
newest checkpoint of an unfinished stage) and its ``gmm.npz`` when
``evaluate`` fitted one. Stage 2 may be left out where only stage 1 is used
(``evaluate --sets rec,gmm`` of a run whose stage 2 is not trained yet). The
evaluation, the ``export`` command and the benchmarks all start from the
`LoadedRun` it returns.
"""

import dataclasses
import os

from vae_balance.config import VAEConfig
from vae_balance.model.vae import BalancedVAE
from vae_balance.sampling.gmm import LatentGMM
from vae_balance.sampling.two_stage import TwoStageSampler
from vae_balance.workdir import (
    STAGES,
    Workdir,
    WorkdirError,
    list_checkpoints,
    load_checkpoint,
)


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedRun:
    """A trained run, loaded.

    ``config`` is None for a run without ``config.json`` (only with
    ``require_config=False``); ``gmm`` is None without ``gmm.npz``;
    ``second_stage`` (and its path) is None for a run without one, loaded
    with ``second_stage=False``. ``paths`` are the files the two stages were
    read from.
    """

    workdir: Workdir
    config: VAEConfig | None
    first_stage: BalancedVAE
    second_stage: BalancedVAE | None
    paths: tuple[str, str | None]
    gmm: LatentGMM | None

    @property
    def stages(self):
        """``(first_stage, second_stage)``."""
        return self.first_stage, self.second_stage

    @property
    def pad(self):
        """Pixels of padding per side added by the loader (0 without config)."""
        return self.config.pad if self.config is not None else 0

    @property
    def sampler(self):
        """The `TwoStageSampler` of the two stages (u -> z -> image)."""
        if self.second_stage is None:
            raise FileNotFoundError(
                f"{self.workdir.stage_path('stage2')} not found: the run has no "
                "stage 2 to sample with (train again with the same --workdir)."
            )
        return TwoStageSampler(
            self.first_stage.decoder,
            self.second_stage.decoder,
            self.first_stage.encoder,
        )


def load_run(workdir, require_config=True, unfinished=False, second_stage=True):
    """Loads a trained run's configuration, stages and mixture.

    Args:
        workdir: a training work directory (path or `Workdir`).
        require_config: raise when ``config.json`` is missing; False: the
            run's ``config`` is None.
        unfinished: a stage without ``<stage>.keras`` is read from its newest
            checkpoint (``export`` of an interrupted run); False: raise.
        second_stage: True: stage 2 is required; False: loaded when the run
            has it (as ``unfinished`` says), else the run's ``second_stage``
            is None (an evaluation of stage 1's sets only).

    Returns:
        A `LoadedRun`; the stages are loaded for inference (not compiled),
        with Keras's ``safe_mode`` on.

    Raises:
        FileNotFoundError: no config.json (when required), or a stage not
            trained (not finished, when ``unfinished`` is False).
        WorkdirError: config.json or a stage file is unreadable.
        ValueError: config.json or gmm.npz does not hold what it should.
    """
    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    config = _read_config(workdir, require_config)
    paths = tuple(
        _stage_file(workdir, stage, unfinished, required=second_stage or i == 0)
        for i, stage in enumerate(STAGES)
    )
    stages = (None if p is None else load_checkpoint(p, compile=False) for p in paths)
    gmm = LatentGMM.load(workdir.gmm_path) if os.path.isfile(workdir.gmm_path) else None
    return LoadedRun(workdir, config, *stages, paths, gmm)


def _read_config(workdir, required):
    config = workdir.read_config()  # WorkdirError when not JSON
    if config is None:
        if required:
            raise FileNotFoundError(
                f"{workdir.config_path} not found: is {workdir.root!r} a training "
                "work directory?"
            )
        return None
    try:
        return VAEConfig.from_dict(config)
    except (ValueError, KeyError, TypeError) as error:
        raise WorkdirError(f"Cannot read {workdir.config_path}: {error}") from None


def _stage_file(workdir, stage, unfinished, required=True):
    """The finished ``<stage>.keras``, else (``unfinished``) its newest
    checkpoint; else None when not ``required``."""
    path = workdir.stage_path(stage)
    if os.path.isfile(path):
        return path
    found = list_checkpoints(workdir.checkpoint_dir, stage) if unfinished else []
    if found:
        return found[-1].path
    if not required:
        return None
    if not unfinished:
        raise FileNotFoundError(
            f"{path} not found: the run has not finished {stage} (train again "
            "with the same --workdir to resume)."
        )
    raise FileNotFoundError(
        f"No {stage}.keras and no {stage} checkpoint in {workdir.root!r}: train first."
    )
