"""Every program's user mistakes: one line naming the flag or file, the exit status, nothing
written.

The mistakes run in this process through the shared start-up (`ema_keras.cli`,
flags parsed by absl as on the command line); `--help` runs as a real process.
"""

import json
import os
import subprocess
import sys

import pytest

from ema_keras.data import discovery
from tests.cli_testing import REPO, load_program, remove_program_flags, run_program
from tests.data.conftest import write_voc


def files_under(folder):
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder)
        for name in names
    )


def check_refusal(capsys, status, expected_status, *named):
    """Exactly one line on stderr, `<program>: ...`, naming each of `named`; no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == expected_status, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_data_anywhere(tmp_path, monkeypatch):
    """A user without VOC in any conventional place (cwd, home, TFDS manual folder)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(discovery.ENV_VAR, raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    return tmp_path


# train_voc.py


@pytest.mark.parametrize(
    "flag, named, status",
    [
        ("--strategy=mirored", ["--strategy", "mirored", "mirrored"], 2),
        ("--recipe=voc_oficial", ["--recipe", "voc_oficial", "voc_official"], 2),
        ("--preset=emanet_resnet99", ["--preset", "emanet_resnet99", "emanet_tiny_demo"], 2),
        ("--mixed_precision=fp16", ["--mixed_precision", "fp16", "mixed_float16"], 2),
        ("--steps=many", ["--steps", "many"], 2),
        ("--no_such_flag=1", ["no_such_flag"], 2),
    ],
)
def test_train_refuses_a_bad_flag_before_anything(no_data_anywhere, capsys, flag, named, status):
    model_dir = no_data_anywhere / "run"
    result = run_program("train_voc.py", "--recipe=demo", f"--model_dir={model_dir}", flag)
    check_refusal(capsys, result, status, "train_voc.py: ", *named)
    assert not model_dir.exists()  # a bad --preset used to generate the demo set first


def test_train_without_data_says_what_is_needed_where_and_which_flags(no_data_anywhere, capsys):
    model_dir = no_data_anywhere / "run"
    status = run_program("train_voc.py", f"--model_dir={model_dir}", "--strategy=one_device")
    line = check_refusal(capsys, status, 2, "VOCdevkit", "host.robots.ox.ac.uk", "berkeley.edu")
    for flag in ("--data_dir", "--sbd_dir", "--aug_dir", "--recipe demo"):
        assert flag in line
    assert files_under(no_data_anywhere) == []


@pytest.mark.parametrize("layout", ["missing", "empty"])
def test_train_names_a_data_dir_without_voc(no_data_anywhere, capsys, layout):
    data_dir = no_data_anywhere / "VOCdevkit"
    if layout == "empty":
        data_dir.mkdir()
    status = run_program(
        "train_voc.py", f"--model_dir={no_data_anywhere / 'run'}", f"--data_dir={data_dir}"
    )
    check_refusal(capsys, status, 1, str(data_dir), "--data_dir")
    assert not (no_data_anywhere / "run").exists()


def test_train_without_sbd_names_the_flags_not_python_arguments(no_data_anywhere, capsys):
    write_voc(str(no_data_anywhere / "data" / "VOCdevkit"), {"train": ["a"], "val": ["v"]})
    model_dir = no_data_anywhere / "run"
    status = run_program("train_voc.py", f"--model_dir={model_dir}", "--strategy=one_device")
    line = check_refusal(capsys, status, 2, "--train_split trainaug", "--sbd_dir", "--aug_dir")
    assert "sbd_root=" not in line
    assert not model_dir.exists()


def test_train_needs_a_model_dir(no_data_anywhere, capsys):
    check_refusal(capsys, run_program("train_voc.py", "--recipe=demo"), 2, "--model_dir")


def test_print_config_shows_the_resolved_recipe_and_writes_nothing(no_data_anywhere, capsys):
    status = run_program("train_voc.py", "--recipe=demo", "--steps=7", "--print_config")
    config = json.loads(capsys.readouterr().out)
    assert status == 0
    assert config["preset"] == "emanet_tiny_demo" and config["steps"] == 7
    assert config["log_every_steps"] == 20
    assert files_under(no_data_anywhere) == []


def test_every_train_flag_has_a_sentence_of_help():
    from absl import flags

    from ema_keras.training import TrainConfig

    try:
        load_program("train_voc.py")
        names = [field.name for field in __import__("dataclasses").fields(TrainConfig)]
        for name in names + ["recipe", "model_dir", "print_config"]:
            help_text = flags.FLAGS[name].help
            assert len(help_text.split()) >= 4 and help_text.endswith("."), (name, help_text)
            assert help_text.rstrip(".").lower() != name.replace("_", " "), name
    finally:
        remove_program_flags()


# Data discovery (the library half of train_voc's search).


def test_discovery_order_flag_then_environment_then_data_folder_then_tfds(tmp_path):
    env_voc, _ = write_voc(str(tmp_path / "env"), {"train": ["a"]})
    cwd_voc, _ = write_voc(str(tmp_path / "cwd" / "data" / "VOCdevkit"), {"train": ["a"]})
    tfds_voc, _ = write_voc(str(tmp_path / "tfds" / "downloads" / "manual"), {"train": ["a"]})
    os.makedirs(tmp_path / "tfds" / "downloads" / "manual" / "benchmark_RELEASE")
    given, _ = write_voc(str(tmp_path / "given"), {"train": ["a"]})
    environ = {discovery.ENV_VAR: str(tmp_path / "env"), "TFDS_DATA_DIR": str(tmp_path / "tfds")}
    cwd = str(tmp_path / "cwd")

    def found(data_dir=None, **env):
        return discovery.find_voc_data(data_dir, environ=env, cwd=cwd)

    assert found(given, **environ).voc_root == given
    assert found(**environ).voc_root == env_voc
    assert found(TFDS_DATA_DIR=environ["TFDS_DATA_DIR"]).voc_root == cwd_voc
    cwd = str(tmp_path)  # no data/VOCdevkit here
    tfds = found(TFDS_DATA_DIR=environ["TFDS_DATA_DIR"])
    assert tfds.voc_root == tfds_voc and tfds.sbd_dir.endswith("benchmark_RELEASE")
    with pytest.raises(discovery.DataNotFoundError, match="--data_dir"):
        found(TFDS_DATA_DIR=str(tmp_path / "nothing"))


# eval_voc.py, predict.py, export_model.py, convert_pytorch.py, ema-keras-validate


def test_eval_names_a_missing_model_and_a_missing_data_dir(tmp_path, capsys):
    voc_root, _ = write_voc(str(tmp_path), {"val": ["v"]})
    model = tmp_path / "none.keras"
    status = run_program("eval_voc.py", f"--model={model}", f"--data_dir={voc_root}")
    check_refusal(capsys, status, 1, "eval_voc.py: ", str(model))
    status = run_program("eval_voc.py", f"--model={model}", f"--data_dir={tmp_path / 'nope'}")
    check_refusal(capsys, status, 1, str(tmp_path / "nope"))
    check_refusal(capsys, run_program("eval_voc.py"), 2, "--model")


def test_predict_names_a_missing_model_and_a_non_image_and_writes_nothing(tmp_path, capsys):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    (images / "notes.jpg").write_text("not an image")
    out = tmp_path / "out"
    model = tmp_path / "none.keras"
    # One unreadable file among photos is skipped (listed); the missing model is the refusal.
    status = run_program(
        "predict.py", f"--model={model}", f"--inputs={images}", f"--output_dir={out}"
    )
    check_refusal(capsys, status, 1, "predict.py: ", str(model))
    # Nothing readable at all: refused before the model is even opened, each file listed.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.jpg").write_text("not an image")
    status = run_program("predict.py", f"--model={model}", f"--inputs={bad}", f"--output_dir={out}")
    listed = capsys.readouterr()
    assert status == 1 and str(bad / "notes.jpg") in listed.out, listed
    assert listed.err.strip().splitlines() == [
        f"predict.py: {bad}: none of the 1 images can be read (listed above)"
    ], listed.err
    assert sorted(os.listdir(tmp_path)) == ["bad", "images"]  # no out/


def test_export_and_convert_name_the_missing_file(tmp_path, capsys):
    model = tmp_path / "none.keras"
    out = tmp_path / "export"
    status = run_program(
        "export_model.py", f"--model={model}", f"--output_dir={out}", f"--images={model}"
    )
    check_refusal(capsys, status, 1, "export_model.py: ", str(model))
    status = run_program(
        "export_model.py", f"--model={model}", f"--output_dir={out}", "--images=x.jpg",
        "--formats=tflite_fp64",
    )
    check_refusal(capsys, status, 2, "--formats", "tflite_fp64")
    assert not out.exists()
    status = run_program(
        "convert_pytorch.py", f"--input={tmp_path / 'none.pth'}", f"--output={tmp_path / 'o.keras'}"
    )
    check_refusal(capsys, status, 1, "convert_pytorch.py: ", str(tmp_path / "none.pth"))
    assert files_under(tmp_path) == []


def test_validator_takes_the_trainers_flag_names(tmp_path, capsys):
    voc_root, _ = write_voc(str(tmp_path), {"train": ["a"], "val": ["v"]})
    status = run_program("ema-keras-validate", f"--data_dir={voc_root}", "--sbd-root=x")
    check_refusal(capsys, status, 2, "ema-keras-validate: ", "sbd-root")
    status = run_program(
        "ema-keras-validate", f"--data_dir={voc_root}", "--splits=trainaug", "--num_classes=21"
    )
    check_refusal(capsys, status, 2, "--sbd_dir", "--aug_dir")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        run_program("eval_voc.py", f"--model={tmp_path / 'm.keras'}", f"--data_dir={tmp_path}",
                    "--debug")


# --help, as a real process: no TensorFlow start-up line.


@pytest.mark.slow
def test_help_of_the_programs_is_free_of_tensorflow_noise():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO
    validator = os.path.join(os.path.dirname(sys.executable), "ema-keras-validate")
    outputs = {}
    for command in (
        [sys.executable, os.path.join(REPO, "recipes", "train_voc.py")],
        [sys.executable, os.path.join(REPO, "recipes", "predict.py")],
        [validator],
    ):
        run = subprocess.run(
            [*command, "--help"], capture_output=True, text=True, env=env, timeout=120
        )
        assert run.returncode in (0, 1), run.stderr  # absl's --help exits 1
        assert run.stderr == "", run.stderr
        assert "--[no]debug:" in run.stdout
        outputs[os.path.basename(command[-1])] = run.stdout
    assert "palette" in outputs["predict.py"] and "JPEG" in outputs["predict.py"]
    assert "--sbd_dir" in outputs["ema-keras-validate"]
    assert "         --data_dir" not in outputs["train_voc.py"]  # no continuation run of spaces


@pytest.mark.parametrize("recipe", ["demo", "demo_mobile"])
def test_demo_recipes_train_on_the_generated_set_without_looking_for_data(
    no_data_anywhere, recipe
):
    from ema_keras.training import get_recipe
    from ema_keras.training.data_search import with_found_data

    config = get_recipe(recipe)
    assert with_found_data(config, recipe) is config  # no discovery, no error


# What the programs share: one --scales parser, one --precision, one rule for exit statuses.


@pytest.mark.parametrize("program", ["train_voc.py", "eval_voc.py", "predict.py"])
def test_every_program_refuses_scales_that_are_not_numbers_in_one_line(
    no_data_anywhere, capsys, program
):
    required = {
        "train_voc.py": ["--recipe=demo", f"--model_dir={no_data_anywhere / 'run'}"],
        "eval_voc.py": [f"--model={no_data_anywhere / 'm.keras'}"],
        "predict.py": [f"--model={no_data_anywhere / 'm.keras'}", "--inputs=x.jpg",
                       f"--output_dir={no_data_anywhere / 'out'}"],
    }[program]
    status = run_program(program, *required, "--scales=0.5,big")
    check_refusal(capsys, status, 2, f"{program}: ", "--scales", "0.5,big", "numbers")
    assert files_under(no_data_anywhere) == []


@pytest.mark.parametrize("program", ["train_voc.py", "eval_voc.py", "predict.py"])
def test_scales_parse_to_numbers_and_are_filed_under_the_program(program):
    module = load_program(program)
    try:
        own = {flag.name for flag in module.FLAGS.flags_by_module_dict()[module.__name__]}
        assert "scales" in own  # so that the program's --help lists it
        if program != "train_voc.py":
            assert {"precision", "precision_check_images"} <= own
        assert module.FLAGS["scales"].parser.parse("0.5,1,1.75") == (0.5, 1.0, 1.75)
    finally:
        remove_program_flags()


def test_export_takes_the_shared_precision_flag():
    module = load_program("export_model.py")
    try:
        own = {flag.name for flag in module.FLAGS.flags_by_module_dict()[module.__name__]}
        assert "precision" in own and "precision_check_images" not in own
        assert "SavedModel precision" in module.FLAGS["precision"].help
        assert module.FLAGS["precision"].parser.enum_values == ["auto", "float32", "bfloat16"]
    finally:
        remove_program_flags()


def test_a_data_folder_named_by_the_environment_that_is_missing_is_a_data_error(
    no_data_anywhere, capsys, monkeypatch
):
    missing = no_data_anywhere / "nowhere"
    monkeypatch.setenv(discovery.ENV_VAR, str(missing))
    status = run_program("train_voc.py", f"--model_dir={no_data_anywhere / 'run'}")
    check_refusal(capsys, status, 1, str(missing), f"${discovery.ENV_VAR}")


def test_another_benchmark_found_nowhere_asks_for_the_flag(no_data_anywhere, capsys):
    status = run_program(
        "train_voc.py", "--recipe=cityscapes", f"--model_dir={no_data_anywhere / 'run'}",
        "--strategy=one_device",
    )
    check_refusal(capsys, status, 2, "no cityscapes data found", "--data_dir")
    assert files_under(no_data_anywhere) == []
