"""Label maps for many images on Ray Data: the library behind `predict.py --engine ray`.

`predict_with_ray(model_path, inputs, output_dir)` writes what `prediction`
writes (`<name>.png`, and with `overlays` `<name>_overlay.jpg`), with the same
names, the same readers and the same refusals, decided before anything is
written; with `probabilities`, also `<name>_probabilities.npz` (the softmax,
float16, (H, W, num_classes)). The images go through a Ray Data
`map_batches` over a pool of model replicas (actors): one per GPU on a
cluster with GPUs, else `num_workers` CPU workers sharing the CPUs, each
loading the `.keras` file once.

Inputs are folders (read recursively, as `prediction.list_images`), files,
globs (`photos/**/*.jpg`) and manifests (a `.txt` or `.lst` file: one path
per line, relative to the manifest's folder; blank lines and `#` comments
left out).

Resumable: every file is written under a temporary name in its folder
(`.<name>.partial`) and moved into place with `os.replace`, so a file at
an output path is whole. An image is complete when all its files are there
and none of its temporary ones; a re-run skips complete images and redoes
the others (killed while writing, or a file missing). An image that cannot
be read or predicted is recorded in `prediction_report.jsonl` in the output
folder (one JSON object per line: `path`, `error`), rewritten by each run,
and the job goes on; the `BulkPredictionSummary` counts done, skipped and
failed.

Ray is an optional dependency (`pip install 'ema-keras[ray]'`), imported only
when `predict_with_ray` runs.
"""

import dataclasses
import glob
import json
import math
import os
import time
import zipfile

import numpy as np

from ema_keras.data.errors import DataError, MissingFileError
from ema_keras.data.photos import load_photo
from ema_keras.inference.multi_scale import predict_probabilities
from ema_keras.inference.precision import inference_model
from ema_keras.inference.prediction import (
    OUTPUT_MARKER,
    OutputConflictError,
    file_key,
    plan_predictions,
    refuse_foreign_file,
    save_label_map,
    save_overlay,
)
from ema_keras.model_files import load_keras_model, read_keras_config
from ema_keras.visualize import label_colours

PROBABILITIES_SUFFIX = "_probabilities.npz"
PARTIAL_SUFFIX = ".partial"
REPORT_NAME = "prediction_report.jsonl"
MANIFEST_EXTENSIONS = (".txt", ".lst")
RAY_EXTRA = "pip install 'ema-keras[ray]'"
# What `predict_probabilities` takes besides the model and the images.
INFERENCE_OPTIONS = ("scales", "flip", "window", "stride")
# Without GPUs, one model replica per this many CPUs unless num_workers says otherwise.
CPUS_PER_DEFAULT_WORKER = 4


class RayNotInstalledError(ImportError):
    """`predict_with_ray` without Ray installed."""


@dataclasses.dataclass(frozen=True)
class BulkOutput:
    """One image and the files it gets (None: not asked for)."""

    image_path: str
    label_path: str
    overlay_path: str | None = None
    probabilities_path: str | None = None

    @property
    def output_paths(self):
        paths = (self.overlay_path, self.probabilities_path, self.label_path)
        return tuple(path for path in paths if path)

    @property
    def partial_paths(self):
        return tuple(partial_path(path) for path in self.output_paths)

    def is_complete(self):
        return all(os.path.exists(path) for path in self.output_paths) and not any(
            os.path.lexists(path) for path in self.partial_paths
        )


@dataclasses.dataclass
class BulkPredictionSummary:
    """What a bulk prediction run did (`failures`: {image path: error}, also in the report)."""

    total: int
    report_path: str
    done: int = 0
    skipped: int = 0
    failed: int = 0
    converted: int = 0
    failures: dict = dataclasses.field(default_factory=dict)

    def progress(self):
        """One line while it runs: how far it is."""
        finished = self.done + self.skipped + self.failed
        return (
            f"{finished}/{self.total} images: {self.done} done, {self.skipped} skipped, "
            f"{self.failed} failed"
        )

    def summary(self):
        """One line at the end: done, skipped (already complete), failed (in the report)."""
        converted = f", {self.converted} converted on reading" if self.converted else ""
        failed = f", {self.failed} failed (listed in {self.report_path})" if self.failed else ""
        return (
            f"{self.done} of {self.total} images predicted{converted}, {self.skipped} skipped "
            f"(already complete){failed}"
        )


def partial_path(path):
    """Where `path` is written before it is moved into place: `.<name>.partial` beside it."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}{PARTIAL_SUFFIX}")


def expand_inputs(inputs):
    """Files and folders from `inputs`, with globs expanded and manifests read (module doc)."""
    expanded = []
    for item in inputs:
        item = os.fspath(item)
        if not os.path.exists(item) and any(char in item for char in "*?["):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise MissingFileError(item, "the pattern matches no file")
            expanded += matches
        elif os.path.isfile(item) and item.lower().endswith(MANIFEST_EXTENSIONS):
            expanded += _read_manifest(item)
        else:
            expanded.append(item)
    return expanded


def plan_bulk_predictions(inputs, output_dir, *, overlays=False, probabilities=False):
    """Each image's `BulkOutput`, checked as `prediction.plan_predictions` checks its outputs.

    Raises:
        OutputConflictError: an output (or its temporary name, or the report)
            would replace an input or a file not written by ema-keras, or
            output_dir holds an input.
        MissingFileError, DataError: an input does not exist, or names no image.
    """
    plan = plan_predictions(expand_inputs(inputs), output_dir)
    outputs = []
    for item in plan:
        stem = item.label_path[: -len(".png")]
        outputs.append(
            BulkOutput(
                item.image_path,
                item.label_path,
                item.overlay_path if overlays else None,
                stem + PROBABILITIES_SUFFIX if probabilities else None,
            )
        )
    inputs_by_key = {file_key(item.image_path): item.image_path for item in outputs}
    for item in outputs:
        for path in item.partial_paths:
            if file_key(path) in inputs_by_key:
                raise OutputConflictError(
                    path,
                    f"writing {path} would overwrite the input {inputs_by_key[file_key(path)]}: "
                    "choose an output_dir that holds no input",
                )
        if item.probabilities_path:
            refuse_foreign_file(item.probabilities_path, _probabilities_written_by_us)
    report_path = os.path.join(os.fspath(output_dir), REPORT_NAME)
    if os.path.lexists(report_path) and not _is_report(report_path):
        raise OutputConflictError(
            report_path,
            f"{report_path} exists and is not a prediction report: move it, or choose "
            "another output_dir",
        )
    return outputs


def predict_with_ray(
    model_path,
    inputs,
    output_dir,
    *,
    num_workers=None,
    batch_size=4,
    overlays=False,
    probabilities=False,
    legend=True,
    dataset="voc",
    precision="float32",
    ray_address=None,
    progress=None,
    progress_interval=10.0,
    **inference_options,
):
    """Predicts every image of `inputs` into `output_dir` on Ray Data; a `BulkPredictionSummary`.

    Args:
        model_path: a `.keras` segmenter; each replica loads it and runs it
            with its BatchNorms folded in `precision` (`precision.inference_model`,
            without the agreement check: "auto" is float32).
        inputs: folders, files, globs and manifests (module doc).
        num_workers: model replicas (default: one per GPU of the Ray cluster,
            else one per `CPUS_PER_DEFAULT_WORKER` CPUs, at least one).
        batch_size: images per `map_batches` call (each image is predicted
            at its own size, one at a time, as `predict.py` does).
        overlays, probabilities: also write `<name>_overlay.jpg` (with a legend
            unless `legend` is False) and `<name>_probabilities.npz`.
        dataset: whose colours a model without its own palette takes.
        ray_address: the cluster to use when Ray is not initialised yet
            (default: $RAY_ADDRESS, else a local one started and shut down here).
        progress: called with the summary so far every `progress_interval`
            seconds and at the end (Ray Data also shows its progress bar).
        inference_options: `scales`, `flip`, `window` (`predict_probabilities`).

    Raises:
        RayNotInstalledError: Ray is not installed (one line naming the extra).
        OutputConflictError, MissingFileError, DataError: as
            `plan_bulk_predictions`, before anything is written.
        FileNotFoundError, InvalidModelFileError: `model_path` is no model file.
    """
    unknown = sorted(set(inference_options) - set(INFERENCE_OPTIONS))
    if unknown:  # said here, not by every replica on every image
        raise TypeError(
            f"predict_with_ray got unknown options {', '.join(unknown)}; inference options "
            f"are {', '.join(INFERENCE_OPTIONS)}"
        )
    ray = import_ray()
    read_keras_config(model_path)  # a missing or foreign file, said before Ray starts
    plan = plan_bulk_predictions(
        inputs, output_dir, overlays=overlays, probabilities=probabilities
    )
    report_path = os.path.join(os.fspath(output_dir), REPORT_NAME)
    summary = BulkPredictionSummary(len(plan), report_path)
    pending = []
    for item in plan:
        if item.is_complete():
            summary.skipped += 1
        else:
            pending.append(item)
    os.makedirs(output_dir, exist_ok=True)
    with open(report_path, "w", encoding="utf-8") as report:
        if pending:
            _run_pipeline(
                ray, pending, summary, report,
                replica_options=dict(
                    model_path=os.path.abspath(model_path),
                    precision=precision,
                    dataset=dataset,
                    legend=legend,
                    inference_options=inference_options,
                ),
                num_workers=num_workers, batch_size=batch_size, ray_address=ray_address,
                progress=progress, progress_interval=progress_interval,
            )
    if progress is not None:
        progress(summary)
    return summary


def import_ray():
    """`ray` with Ray Data, or `RayNotInstalledError` naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise RayNotInstalledError(
            f"the ray engine needs Ray Data, which is not installed ({error.name or error}): "
            f"{RAY_EXTRA}"
        ) from None
    return ray


class ModelReplica:
    """One model on one worker: the `map_batches` callable, loaded once per actor."""

    def __init__(
        self, *, model_path, precision, dataset, legend, inference_options, threads=None
    ):
        if threads:
            import tensorflow as tf

            try:  # this worker's share of the CPUs, set before TensorFlow starts its pools
                tf.config.threading.set_intra_op_parallelism_threads(threads)
            except RuntimeError:
                pass
        trained = load_keras_model(model_path)
        self.colours = label_colours(dataset, trained)  # taken before folding drops them
        self.model = inference_model(trained, precision).model
        self.legend = legend
        self.inference_options = inference_options

    def __call__(self, batch):
        results = {"index": [], "error": [], "note": []}
        rows = zip(
            batch["index"], batch["image_path"], batch["label_path"], batch["overlay_path"],
            batch["probabilities_path"],
        )
        for index, image_path, label_path, overlay_path, probabilities_path in rows:
            item = BulkOutput(
                str(image_path), str(label_path), str(overlay_path) or None,
                str(probabilities_path) or None,
            )
            error, note = self._predict(item)
            results["index"].append(int(index))
            results["error"].append(error)
            results["note"].append(note or "")
        return {
            "index": np.asarray(results["index"], np.int64),
            "error": np.asarray(results["error"], dtype=object),
            "note": np.asarray(results["note"], dtype=object),
        }

    def _predict(self, item):
        """(error or "", note) for one image; its files are written whole or not at all."""
        try:
            image, note = load_photo(item.image_path)
        except DataError as error:
            return error.reason, None
        try:
            batch = np.asarray(image, np.float32)[None]  # raw pixels, as predict_label_map
            scores = predict_probabilities(self.model, batch, **self.inference_options)[0]
            label = np.argmax(scores, axis=-1).astype(np.uint8)
            os.makedirs(os.path.dirname(item.label_path) or ".", exist_ok=True)
            # The label map last: most interrupted images then have none.
            if item.overlay_path:
                _write_atomically(
                    item.overlay_path,
                    lambda path: save_overlay(image, label, path, self.colours,
                                              legend=self.legend),
                )
            if item.probabilities_path:
                _write_atomically(item.probabilities_path,
                                  lambda path: _save_probabilities(scores, path))
            _write_atomically(
                item.label_path, lambda path: save_label_map(label, path, self.colours.colormap)
            )
        except Exception as error:  # noqa: BLE001 - recorded in the report; the job goes on
            return f"{type(error).__name__}: {' '.join(str(error).split())}", note
        return "", note


def _run_pipeline(
    ray, pending, summary, report, *, replica_options, num_workers, batch_size, ray_address,
    progress, progress_interval,
):
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
    try:
        workers, threads, remote_args = _worker_resources(ray.cluster_resources(), num_workers)
        workers = min(workers, len(pending))  # a replica with no image would only cost a load
        for item in pending:  # a run killed while writing leaves these; they are ours
            for path in item.partial_paths:
                if os.path.lexists(path):
                    os.remove(path)
        # Absolute: the workers do not share the driver's working folder.
        rows = [
            {
                "index": index,
                "image_path": os.path.abspath(item.image_path),
                "label_path": os.path.abspath(item.label_path),
                "overlay_path": item.overlay_path and os.path.abspath(item.overlay_path) or "",
                "probabilities_path": (
                    item.probabilities_path and os.path.abspath(item.probabilities_path) or ""
                ),
            }
            for index, item in enumerate(pending)
        ]
        dataset = ray.data.from_items(rows).map_batches(
            ModelReplica,
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs=dict(replica_options, threads=threads),
            batch_format="numpy",
            **remote_args,
        )
        last = time.monotonic()
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for index, error, note in zip(batch["index"], batch["error"], batch["note"]):
                path = pending[int(index)].image_path
                if error:
                    summary.failed += 1
                    summary.failures[str(path)] = str(error)
                    report.write(json.dumps({"path": str(path), "error": str(error)}) + "\n")
                    report.flush()
                else:
                    summary.done += 1
                    summary.converted += bool(note)
            if progress is not None and time.monotonic() - last >= progress_interval:
                progress(summary)
                last = time.monotonic()
    finally:
        if started_ray:
            ray.shutdown()


def _worker_resources(cluster, num_workers):
    """(replicas, TensorFlow threads each, Ray resources each) on a cluster's resources."""
    gpus = int(cluster.get("GPU", 0))
    cpus = max(1, int(cluster.get("CPU", 1)))
    if num_workers is not None and int(num_workers) < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if gpus:
        workers = int(num_workers or gpus)
        return workers, None, {"num_gpus": _share(gpus, workers), "num_cpus": 1}
    workers = int(num_workers or max(1, cpus // CPUS_PER_DEFAULT_WORKER))
    share = _share(cpus, workers)
    return workers, max(1, int(share)), {"num_cpus": share}


def _share(total, parts):
    # Ray takes fractions below one and whole numbers above.
    share = total / parts
    return float(math.floor(share)) if share >= 1 else math.floor(share * 1e4) / 1e4


def _write_atomically(path, write):
    temporary = partial_path(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            os.remove(temporary)


def _save_probabilities(scores, path):
    with open(path, "wb") as file:  # a file object: np.savez would add .npz to the name
        np.savez_compressed(
            file, probabilities=scores.astype(np.float16), software=np.array(OUTPUT_MARKER)
        )


def _probabilities_written_by_us(path):
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    try:
        with np.load(path, allow_pickle=False) as archive:
            return "software" in archive.files and str(archive["software"]) == OUTPUT_MARKER
    except (OSError, ValueError, zipfile.BadZipFile):
        return False


def _is_report(path):
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    with open(path, "rb") as file:
        first = file.readline()
    if not first.strip():
        return os.path.getsize(path) == len(first)  # empty: a run without failures
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and set(record) == {"path", "error"}


def _read_manifest(path):
    folder = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as file:
        lines = [line.strip() for line in file]
    entries = [os.path.join(folder, line) for line in lines if line and not line.startswith("#")]
    if not entries:
        raise DataError(path, "the manifest lists no image")
    return entries
