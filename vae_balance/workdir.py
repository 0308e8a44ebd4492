"""The work directory of a run: its files, its lock, and how they are written.

One place for the layout that the job, the CLI, the evaluation and the
plots share (`Workdir` names every file), for the one way to replace a file
atomically (`atomic_write`: a temporary name, then a rename), and for the
checkpoints::

    config.json              the full resolved configuration, the dtype
                             policy ("precision") and the image "limit"
    history_stage1.csv       one row per epoch (Keras CSVLogger)
    steps_stage1.csv         one row per step: loss, kl_loss, mse, gamma^2
    checkpoints/stage1-epoch0003.keras   weights + optimizer + running_mse
    checkpoints/stage1-epoch0003-step000120.keras, .json
                             a step checkpoint and its record
                             (`vae_balance.training.checkpoints`)
    stage1.keras, stage2.keras           the finished stages
    latents.npz              z_mean, z_log_sigma of the training set
    batchnorm.json           the sha256 of the recalibrated stage1.keras
    sampler/                 SavedModel (sample, decode, encode, reconstruct)
    images/                  PNG grids: reconstructions, GEN-1, GEN-2
    curves.png               mse and gamma^2 (log), KL, loss over steps
    tensorboard/             scalars and image grids
    evaluation.json, evaluation.md       `vae_balance.evaluation.protocol` reports
    gmm.npz                  the ex-post Gaussian mixture of the latent codes
                             (`vae_balance.sampling.gmm`)
    features/                Inception features per image set, and the
                             scores (`vae_balance.fid.feature_cache`)
    images/interpolations.png            latent interpolations

Every file is first written under ``<name>.tmp-<pid>[suffix]`` and renamed,
so a writer killed at any point leaves only complete files and temporaries,
which the next run deletes with the directory locked.
"""

import csv
import dataclasses
import fcntl
import glob
import io
import json
import os
import re

import keras

from vae_balance.files import atomic_write, describe_os_error, sha256, write_json

STAGES = ("stage1", "stage2")
GMM_FILE = "gmm.npz"
FEATURES_DIR = "features"
INTERPOLATIONS_FILE = os.path.join("images", "interpolations.png")

# Fields that may change between a run and its resumption (schedules, and the
# learning rate to restart a diverged run more gently). All others define the
# model and must match.
RESUMABLE_FIELDS = {
    "epochs",
    "epochs2",
    "learning_rate",
    "learning_rate2",
    "lr_epochs",
    "lr_epochs2",
}

# ``balance`` decides the model's variables (a trainable log-gamma for
# "learned"): no --allow-config-change changes it under trained checkpoints.
CHECKPOINT_BOUND_FIELDS = ("balance",)

# Temporary names: this module's ``*.tmp-<pid>*``, and those of older versions.
TEMPORARY_PATTERNS = ("*.tmp-*", "*.tmp.npz", "*.csv.tmp")


class WorkdirError(RuntimeError):
    """Raised when a work directory cannot be used for this run."""


class SaveError(WorkdirError):
    """Raised when a file of the run cannot be written (disk full, permission).

    The file being written is left as it was: its temporary copy is removed
    and the complete files written before are kept, so rerunning the same
    command once the cause is fixed resumes from the last complete checkpoint.
    """


_CHECKPOINT_NAME = re.compile(
    r"(?P<stage>stage\d)-epoch(?P<epoch>\d+)(?:-step(?P<step>\d+))?\.keras"
)


def parse_checkpoint_name(basename):
    """``(stage, epochs_done, step)`` of a checkpoint file name, or None."""
    match = _CHECKPOINT_NAME.fullmatch(basename)
    if not match:
        return None
    return match["stage"], int(match["epoch"]), int(match["step"] or 0)


# ------------------------------------------------------------ checkpoints
@dataclasses.dataclass(frozen=True, order=True)
class Position:
    """Where a stage is: ``epoch`` epochs done, then ``step`` steps of the next."""

    epoch: int
    step: int = 0

    def global_step(self, steps_per_epoch):
        """Optimizer steps done: ``epoch * steps_per_epoch + step``."""
        return self.epoch * steps_per_epoch + self.step

    def name(self, stage):
        """The checkpoint's file name without extension."""
        name = f"{stage}-epoch{self.epoch:04d}"
        return f"{name}-step{self.step:06d}" if self.step else name

    def describe(self, steps_per_epoch=None):
        if not self.step:
            return f"epoch {self.epoch}"
        of = f"/{steps_per_epoch}" if steps_per_epoch else ""
        return f"epoch {self.epoch} + step {self.step}{of}"


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One checkpoint on disk: its model file, record file and position."""

    path: str
    position: Position

    @property
    def record_path(self):
        return self.path[: -len(".keras")] + ".json"

    def read_record(self):
        """The record dict, or None for a checkpoint of an earlier version."""
        if not os.path.exists(self.record_path):
            return None
        with open(self.record_path) as f:
            return json.load(f)


def list_checkpoints(checkpoint_dir, stage):
    """The complete checkpoints of a stage, oldest first.

    Epoch-boundary checkpoints (``{stage}-epochNNNN.keras``) and step
    checkpoints (``{stage}-epochNNNN-stepSSSSSS.keras``); see
    `vae_balance.training.checkpoints`. Only exact checkpoint names count:
    the temporary files of a killed writer (``...keras.tmp-<pid>.keras``),
    set-aside files and records without a model never do.
    """
    found = []
    for path in glob.glob(os.path.join(checkpoint_dir, f"{stage}-epoch*.keras")):
        parsed = parse_checkpoint_name(os.path.basename(path))
        if parsed and parsed[0] == stage:
            found.append(Checkpoint(path, Position(parsed[1], parsed[2])))
    return sorted(found, key=lambda checkpoint: checkpoint.position)


def truncate_csv(path, keep_rows_where):
    """Drops rows of epochs past the checkpoint, left by a killed run.

    A row cut short by the kill (missing or extra fields, an unparsable
    value) is dropped too, and the file rewritten without it.
    """
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        fieldnames = reader.fieldnames
    if not rows:
        return

    def keep(row):
        if None in row or None in row.values():
            return False
        try:
            return keep_rows_where(row)
        except (TypeError, ValueError):
            return False

    kept = [row for row in rows if keep(row)]
    if len(kept) != len(rows):
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(kept)
        atomic_write(path, text.getvalue().encode())


# ------------------------------------------------------------------ lock
class WorkdirLock:
    """An exclusive lock on a work directory (released even on SIGKILL)."""

    def __init__(self, workdir):
        self.path = os.path.join(workdir, ".lock")
        self.file = None

    def __enter__(self):
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            owner = self.file.read().strip() or "unknown"
            self.file.close()
            raise WorkdirError(
                f"Work directory {os.path.dirname(self.path)!r} is in use by "
                f"another run (process id {owner}). Wait for it to finish, stop "
                "it, or choose another --workdir."
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


# ---------------------------------------------------------------- layout
class Workdir:
    """The files of one run, by name; ``stage`` is ``"stage1"`` or ``"stage2"``.

    Args:
        root: the work directory (need not exist yet).
    """

    def __init__(self, root):
        self.root = os.fspath(root)
        self.config_path = self.path("config.json")
        self.checkpoint_dir = self.path("checkpoints")
        self.snapshot_dir = self.path("snapshots")
        self.latents_path = self.path("latents.npz")
        self.batchnorm_path = self.path("batchnorm.json")
        self.sampler_dir = self.path("sampler")
        self.images_dir = self.path("images")
        self.curves_path = self.path("curves.png")
        self.evaluation_json = self.path("evaluation.json")
        self.evaluation_md = self.path("evaluation.md")
        self.gmm_path = self.path(GMM_FILE)
        self.features_dir = self.path(FEATURES_DIR)
        self.interpolations_path = self.path(INTERPOLATIONS_FILE)

    def __fspath__(self):
        return self.root

    def path(self, *names):
        """A path inside the work directory."""
        return os.path.join(self.root, *names)

    def tensorboard_dir(self, name):
        """``tensorboard/<name>``: a stage's scalars, or ``"images"``."""
        return self.path("tensorboard", name)

    def stage_path(self, stage):
        """``<stage>.keras``: the finished stage."""
        return self.path(f"{stage}.keras")

    def history_csv(self, stage):
        """``history_<stage>.csv``: one row per epoch."""
        return self.path(f"history_{stage}.csv")

    def steps_csv(self, stage):
        """``steps_<stage>.csv``: one row per step."""
        return self.path(f"steps_{stage}.csv")

    # ------------------------------------------------------------ config
    def read_config(self):
        """The ``config.json`` dict, or None when there is none.

        Raises:
            WorkdirError: the file is not valid JSON.
        """
        if not os.path.exists(self.config_path):
            return None
        with open(self.config_path) as f:
            try:
                return json.load(f)
            except json.JSONDecodeError as error:
                raise WorkdirError(
                    f"{self.config_path} is not valid JSON ({error}); move it "
                    "away or choose another --workdir."
                ) from None

    def check_and_write_config(self, config, allow_config_change=False, settings=None):
        """Writes ``config`` (a `VAEConfig`) after checking it may resume here.

        ``settings``: the run's settings outside the config that change what
        it trains, written beside the config's fields and checked the same
        way: ``{"precision": <the Keras dtype policy>, "limit": <images or
        None>}`` from `vae_balance.training.job.train`. A ``config.json`` of an
        older version without them is not refused for their absence.

        Raises:
            WorkdirError: ``config.json`` is unreadable, or another
                configuration differs in a field outside `RESUMABLE_FIELDS`
                and ``allow_config_change`` is False, or (whatever that) in
                `CHECKPOINT_BOUND_FIELDS` after a stage trained here.
        """
        previous = self.read_config()
        settings = settings or {}
        current = {**config.to_dict(), **settings}
        if previous is not None:
            self._check_checkpoint_bound_fields(previous, current)
        if previous is not None and not allow_config_change:
            changed = sorted(
                key
                for key in current
                if key not in RESUMABLE_FIELDS
                and previous.get(key) != current[key]
                and (key in previous or key not in settings)
            )
            if changed:
                details = ", ".join(
                    f"{k}: {previous.get(k)!r} -> {current[k]!r}" for k in changed
                )
                raise WorkdirError(
                    f"Work directory {self.root!r} holds a run with a different "
                    f"configuration ({details}). Use another --workdir, or pass "
                    "--allow-config-change to continue anyway."
                )
        write_json(self.config_path, current)

    def _check_checkpoint_bound_fields(self, previous, current):
        changed = [k for k in CHECKPOINT_BOUND_FIELDS if k in previous]
        changed = [k for k in changed if previous[k] != current[k]]
        trained = [
            stage
            for stage in STAGES
            if list_checkpoints(self.checkpoint_dir, stage)
            or os.path.exists(self.stage_path(stage))
        ]
        if trained and changed:
            details = ", ".join(
                f"{key}: {previous[key]!r} -> {current[key]!r}" for key in changed
            )
            raise WorkdirError(
                f"Work directory {self.root!r} holds {' and '.join(trained)} "
                f"trained with another {' and '.join(changed)} ({details}); its "
                "checkpoints cannot continue under it, even with "
                "--allow-config-change. Pass the run's own value to resume it, "
                "or use another --workdir to train the new setting from scratch."
            )

    # ------------------------------------------------------- checkpoints
    def discard_stage(self, stage):
        """Removes a stage's checkpoints, model and logs; True if any existed."""
        paths = [c.path for c in list_checkpoints(self.checkpoint_dir, stage)]
        paths += [path[: -len(".keras")] + ".json" for path in paths]
        paths += [
            self.stage_path(stage),
            self.history_csv(stage),
            self.steps_csv(stage),
        ]
        removed = False
        for path in paths:
            if os.path.exists(path):
                os.remove(path)
                removed = True
        return removed

    def remove_stale_temporaries(self):
        """Deletes the temporary files of writers killed mid-write.

        Called with the work directory locked, so no live writer owns them:
        what remains under a temporary name is incomplete and was never used.

        Returns:
            The names of the removed files.
        """
        removed = []
        for folder in (self.root, self.checkpoint_dir):
            for pattern in TEMPORARY_PATTERNS:
                for path in glob.glob(os.path.join(folder, pattern)):
                    if os.path.isfile(path):
                        os.remove(path)
                        removed.append(os.path.basename(path))
        if removed:
            print(
                f"[resume] removed {len(removed)} incomplete temporary file(s) "
                f"left by an interrupted run: {', '.join(sorted(removed))}"
            )
        return removed

    # --------------------------------------------------------- batchnorm
    def read_batchnorm_record(self):
        """The ``batchnorm.json`` dict; empty when missing or unreadable."""
        if not os.path.exists(self.batchnorm_path):
            return {}
        with open(self.batchnorm_path) as f:
            try:
                return json.load(f)
            except json.JSONDecodeError:
                return {}

    def record_recalibration(self, stage, **details):
        """Records in ``batchnorm.json`` the sha256 of the recalibrated
        ``<stage>.keras`` (just written), with ``details``."""
        record = self.read_batchnorm_record()
        record[stage] = {"sha256": sha256(self.stage_path(stage)), **details}
        write_json(self.batchnorm_path, record)

    def is_recalibrated(self, path):
        """True when ``path`` is the stage-1 file whose BatchNorm statistics
        the job recomputed (its sha256 is recorded in ``batchnorm.json``)."""
        if not os.path.exists(path):
            return False
        recorded = self.read_batchnorm_record().get("stage1", {}).get("sha256")
        return recorded is not None and recorded == sha256(path)


# ------------------------------------------------ the functions of a path
def is_recalibrated(workdir, path):
    """True when ``path`` is the stage-1 file whose BatchNorm statistics the
    job recomputed (its sha256 is recorded in ``workdir/batchnorm.json``)."""
    return Workdir(workdir).is_recalibrated(path)


def save_model_atomic(model, path):
    """model.save to a temporary file, then an atomic rename.

    Raises:
        SaveError: the file could not be written (e.g. no space left on the
            device); ``path`` is unchanged and the temporary file removed.
    """
    try:
        atomic_write(path, write=model.save, suffix=".keras")
    except OSError as error:
        raise SaveError(
            f"Could not write {path}: {describe_os_error(error)}. The file is "
            "unchanged (its temporary copy was removed)."
        ) from error


def load_checkpoint(path, compile=True):
    """Loads a checkpoint or finished stage with Keras's ``safe_mode`` on.

    ``safe_mode`` refuses to deserialise Python code (``Lambda`` layers and
    the like), so a tampered file cannot run anything when a run resumes.
    ``compile=False`` skips the optimizer (for inference).

    Raises:
        WorkdirError: the file is unreadable, corrupt or refused, naming it.
    """
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # zipfile, h5py, JSON and Keras errors alike
        raise WorkdirError(
            f"Cannot load {path}: {type(error).__name__}: {str(error).rstrip('.')}. "
            "Checkpoints written by this library hold no Python code and are "
            "written atomically, so this file is corrupt or was replaced "
            "(files with Lambda layers or other code are refused: safe_mode). "
            "Move it out of the checkpoints folder to resume from the "
            "previous checkpoint, or use another --workdir."
        ) from error
