"""The end of a run: deploy.keras for a GhostNetV3 spec, the list of files, the summary.

Also the metadata every saved model file carries (classes, normalisation, input size, spec).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ghostspec.plan.fuse import fuse_plan
from ghostspec.train.outcome import Echo, RunResult
from ghostspec.train.run import RunFolder, RunState, save_state

if TYPE_CHECKING:
    from keras import Model

    from ghostspec.keras.modelfile import ModelMetadata
    from ghostspec.train.inputs import Setup


def model_metadata(setup: Setup) -> ModelMetadata:
    """What best.keras, last.keras and deploy.keras record besides their weights."""
    from ghostspec.data.splits import validation_record
    from ghostspec.keras.modelfile import ModelMetadata

    s = setup
    return ModelMetadata(
        classes=tuple(s.images.classes),
        mean=tuple(s.plan.mean),
        std=tuple(s.plan.std),
        input_size=s.size,
        crop_pct=float(s.recipe.eval.crop_pct),
        spec=s.spec_text,
        validation=validation_record(s.images, s.val_split, s.recipe.seed),
    )


def finish_run(
    setup: Setup,
    twin: Model,
    folder: RunFolder,
    state: RunState,
    metadata: ModelMetadata,
    echo: Echo,
) -> RunResult:
    """The run's last files written, then the state marked finished (a run is finished only
    when every file is), and reported; a worker's own copy of the folder removed."""
    s = setup
    files = _finish_files(setup, twin, folder, metadata)
    state.finished = True
    save_state(folder.state_dir, state)
    best = state.best_top1
    echo(
        f"best val_top1 {best:.4f} at epoch {state.best_epoch} of {state.epoch}"
        if best is not None
        else "no validation figures"
    )
    if s.writer_dir is not None:
        import shutil

        shutil.rmtree(s.writer_dir, ignore_errors=True)
        echo(f"done; the chief wrote {s.run_dir}, this worker's copy is removed")
        files = []
    else:
        echo(f"wrote {folder.path}/: " + ", ".join(p.name for p in files))
    return RunResult(
        run_dir=s.run_dir,
        best_val_top1=best,
        best_epoch=state.best_epoch,
        epochs=state.epoch,
        stopped_early=state.stopped_early,
        resumed_from=0 if s.existing is None else s.existing.state.epoch,
        history=tuple(dict(r) for r in state.history),
        files=tuple(s.run_dir / p for p in files),
    )


def _finish_files(
    setup: Setup, twin: Model, folder: RunFolder, metadata: ModelMetadata
) -> list[Path]:
    """GhostNetV3: deploy.keras from best.keras, checked against it. The list of outputs."""
    from ghostspec.keras.fusion import fuse
    from ghostspec.keras.modelfile import save_model_file

    names = [
        folder.spec,
        folder.recipe,
        folder.classes,
        folder.metrics,
        folder.curves,
        folder.last,
        folder.best,
        folder.logs,
    ]
    plan = setup.plan
    if fuse_plan(plan) != plan and folder.best.is_file():
        twin.load_weights(folder.best)
        deploy = fuse(twin, plan)
        h, w = setup.size
        x = np.random.default_rng(0).normal(size=(2, h, w, int(plan.input_shape[2])))
        x = x.astype("float32")
        expected = np.asarray(twin(x, training=False))
        got = np.asarray(deploy(x, training=False))
        scale = max(1.0, float(np.abs(expected).max()))
        if float(np.abs(expected - got).max()) > 1e-3 * scale:
            raise RuntimeError("the fused deploy model disagrees with best.keras")
        save_model_file(deploy, folder.deploy, metadata, include_optimizer=False)
        names.append(folder.deploy)
    return [Path(p.name) for p in names if p.exists()]
