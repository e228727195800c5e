"""Does a teacher help the mobile student? The demo set, equal steps, several seeds.

    python -m bench.distillation_table --work_dir runs/distillation
    python -m bench.distillation_table --quick     # 2 seeds, 100 student steps

Trains the teacher once (the `demo` recipe: the tiny dilated ResNet EMANet), then
for each seed the `demo_mobile` student (MobileEMANet Small, from scratch) for
`--student_steps` steps without and with `--teacher` (channel-wise distillation at
the recipe defaults), every run through `recipes/train_voc.py` in its own process,
and scores the model at its last step (`last.keras`, not the best checkpoint: equal
steps, no selection on the scored images) with `recipes/eval_voc.py` (each image at
its own size). Prints the machine, every run and the mean and spread over the seeds.
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

from bench.common import header, markdown_table

flags.DEFINE_string("work_dir", "runs/distillation_table", "Folder of the runs (reused).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the student runs.")
flags.DEFINE_integer("student_steps", 300, "Training steps of every student run.")
flags.DEFINE_integer("teacher_steps", 300, "Training steps of the teacher (the demo recipe's).")
flags.DEFINE_boolean("quick", False, "2 seeds, 100 student steps: a smoke run.")
FLAGS = flags.FLAGS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_program(script, *args):
    """Runs a recipe program in a fresh process; returns its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", script), *args],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def train_and_score(model_dir, recipe, steps, seed, *extra):
    """mIoU (%) of the run's last.keras and the training's wall time; reuses a finished run."""
    result_file = os.path.join(model_dir, "eval_last.json")
    if not os.path.isfile(result_file):
        seconds = run_program(
            "train_voc.py", f"--recipe={recipe}", f"--model_dir={model_dir}", f"--steps={steps}",
            f"--steps_per_checkpoint={steps}", f"--seed={seed}", "--novalidate", "--verbose=0",
            *extra,
        )
        run_program(
            "eval_voc.py", f"--model_dir={model_dir}",
            f"--model={os.path.join(model_dir, 'last.keras')}", f"--output_json={result_file}",
        )
        with open(os.path.join(model_dir, "train_seconds.json"), "w") as file:
            json.dump(seconds, file)
    with open(result_file) as file:
        mean_iou = 100 * json.load(file)["mean_iou"]
    with open(os.path.join(model_dir, "train_seconds.json")) as file:
        return mean_iou, json.load(file)


def spread(values):
    mean = statistics.mean(values)
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {deviation:.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main(argv):
    del argv
    seeds = [int(seed) for seed in (FLAGS.seeds[:2] if FLAGS.quick else FLAGS.seeds)]
    steps = 100 if FLAGS.quick else FLAGS.student_steps
    print(header("Teacher-student training on the demo set", {
        "seeds": ",".join(map(str, seeds)), "student_steps": steps,
        "teacher_steps": FLAGS.teacher_steps,
    }))
    teacher_dir = os.path.join(FLAGS.work_dir, "teacher")
    teacher_miou, teacher_seconds = train_and_score(teacher_dir, "demo", FLAGS.teacher_steps, 0)
    teacher = os.path.join(teacher_dir, "last.keras")
    print(f"teacher (demo recipe, {FLAGS.teacher_steps} steps): {teacher_miou:.2f}% mIoU, "
          f"trained in {teacher_seconds:.0f} s")
    rows, scores = [], {"without": [], "with": []}
    for seed in seeds:
        for name, extra in (("without", ()), ("with", (f"--teacher={teacher}",))):
            model_dir = os.path.join(FLAGS.work_dir, f"student_{name}_seed{seed}_{steps}")
            mean_iou, seconds = train_and_score(model_dir, "demo_mobile", steps, seed, *extra)
            scores[name].append(mean_iou)
            rows.append([seed, f"{name} teacher", f"{mean_iou:.2f}", f"{seconds:.0f}"])
            print(f"seed {seed}, {name} teacher: {mean_iou:.2f}% mIoU, {seconds:.0f} s")
    print(markdown_table(["seed", "student", "mIoU (%)", "training s"], rows))
    gains = [b - a for a, b in zip(scores["without"], scores["with"])]
    summary = [
        ["without teacher", spread(scores["without"])],
        ["with teacher", spread(scores["with"])],
        ["gain, same seed", spread(gains)],
    ]
    print(markdown_table(
        [f"demo_mobile, {steps} steps", f"mIoU (%) over {len(seeds)} seeds: mean ± sd"], summary
    ))
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    app.run(main)
