"""The snippets of README.md and docs/*.md, run as a new user would run them.

Every ```python block runs in a fresh interpreter (KERAS_BACKEND=tensorflow) in an
empty folder that holds only what the docs have a reader make first: the Quick
start's trained demo model `runs/demo/best.keras` (here a tiny untrained one of
the same preset and classes) and photos of one's own (`photo.jpg`, `photo1.jpg`,
`photo2.jpg`). A block that cannot run offline says why in the markdown, on the
line right before its fence, and is reported as skipped with that reason:

    <!-- snippet: not run (needs network: a Hugging Face Hub dataset) -->

Shell blocks (```bash, and bare ones) are not run: every program they call must
exist and define every flag they pass it.
"""

import dataclasses
import glob
import os
import re
import shlex
import subprocess
import sys
import textwrap
from typing import Optional

import numpy as np
import pytest
from PIL import Image

from tests.cli_testing import FLAGS, PROGRAMS, REPO, load_program, remove_program_flags

DOCS = ["README.md", *sorted(os.path.relpath(p, REPO) for p in glob.glob(f"{REPO}/docs/*.md"))]
FENCE = re.compile(r"^\s*```(\S*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*not run\s*\((?P<reason>[^)]+)\)\s*-->\s*$")
ANY_MARKER = re.compile(r"<!--\s*snippet:")
# What the docs have a reader make before their snippets (see the module docstring).
PHOTOS = ("photo.jpg", "photo1.jpg", "photo2.jpg")
DEMO_MODEL = os.path.join("runs", "demo", "best.keras")
# At least this many, so that the tests cannot pass by finding nothing.
MIN_PYTHON_SNIPPETS, MIN_RUN_SNIPPETS, MIN_SHELL_COMMANDS = 10, 8, 20


@dataclasses.dataclass(frozen=True)
class Block:
    doc: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    language: str  # "" for a bare fence
    code: str
    not_run: Optional[str]  # the marker's reason

    @property
    def where(self):
        return f"{self.doc}:{self.line}"


def read_blocks(doc):
    """Every fenced block of `doc`, its indentation (a list item's) removed."""
    lines = open(os.path.join(REPO, doc), encoding="utf-8").read().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"{doc}:{index + 1}: a fence that is never closed"
        marker = MARKER.match(lines[index - 1]) if index else None
        blocks.append(Block(
            doc, index + 1, opening.group(1), textwrap.dedent("\n".join(lines[index + 1:end])),
            marker.group("reason").strip() if marker else None,
        ))
        index = end + 1
    return blocks


BLOCKS = [block for doc in DOCS for block in read_blocks(doc)]
PYTHON = [block for block in BLOCKS if block.language == "python"]
SHELL = [block for block in BLOCKS if block.language in ("bash", "sh", "")]


def test_the_docs_hold_the_snippets_this_file_runs():
    assert len(PYTHON) >= MIN_PYTHON_SNIPPETS, [block.where for block in PYTHON]
    assert len([block for block in PYTHON if not block.not_run]) >= MIN_RUN_SNIPPETS
    assert len(shell_commands()) >= MIN_SHELL_COMMANDS


def test_every_not_run_marker_sits_right_before_a_python_block():
    marked = {(block.doc, block.line - 1) for block in PYTHON if block.not_run}
    for doc in DOCS:
        lines = open(os.path.join(REPO, doc), encoding="utf-8").read().splitlines()
        for number, line in enumerate(lines, 1):
            if ANY_MARKER.search(line):
                assert MARKER.match(line), f"{doc}:{number}: write <!-- snippet: not run (why) -->"
                assert (doc, number) in marked, f"{doc}:{number}: no ```python fence right after"


def _demo_photo(path, seed):
    from ema_keras.data.demo import draw_demo_example

    image, _ = draw_demo_example(np.random.default_rng(seed), 96, 128)
    Image.fromarray(image).save(path, quality=92)


@pytest.fixture(scope="session")
def reader_files(tmp_path_factory):
    """The files the docs have a reader make first, in a folder of their own."""
    from ema_keras.data.training_data import class_table_of
    from ema_keras.models import build_preset
    from ema_keras.models.class_info import set_class_info

    root = tmp_path_factory.mktemp("reader")
    os.makedirs(root / os.path.dirname(DEMO_MODEL))
    # What `train_voc.py --recipe demo` saves, untrained: the preset, VOC's classes.
    table = class_table_of("voc")
    model = build_preset("emanet_tiny_demo", num_classes=table.num_classes, seed=0)
    set_class_info(model, table.names, table.palette)
    model.save(root / DEMO_MODEL)
    for seed, name in enumerate(PHOTOS):
        _demo_photo(root / name, seed)
    return root


@pytest.mark.slow  # a fresh interpreter per snippet: TensorFlow's import, 5-10 s each
@pytest.mark.parametrize("block", PYTHON, ids=[block.where for block in PYTHON])
def test_python_snippet_runs(block, reader_files, tmp_path):
    if block.not_run:
        pytest.skip(f"{block.where}: not run ({block.not_run})")
    work = tmp_path / "work"
    work.mkdir()
    for name in os.listdir(reader_files):
        os.symlink(reader_files / name, work / name)
    script = tmp_path / "snippet.py"
    script.write_text(block.code + "\n", encoding="utf-8")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    run = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, f"{block.where}:\n{block.code}\n---\n{run.stderr[-4000:]}"


# Shell blocks: the programs and their flags.

PROGRAM = re.compile(r"(?:^|/)((?:recipes|export|bench)/[\w/-]+\.py|ema-keras-validate)$")
MODULE = re.compile(r"^(?:recipes|export|bench)(?:\.\w+)+$")
SEPARATORS = ("&&", "||", ";", "|")


def shell_commands():
    """(where, program, [flag names]) of every program call in the shell blocks."""
    commands = []
    for block in SHELL:
        text = block.code.replace("\\\n", " ")
        for number, line in enumerate(text.splitlines()):
            words = shlex.split(line, comments=True)
            start = 0
            for end in [i for i, word in enumerate(words) if word in SEPARATORS] + [len(words)]:
                command, start = words[start:end], end + 1
                # `python -m bench.train_step` runs bench/train_step.py.
                command = [
                    f"{word.replace('.', '/')}.py" if MODULE.match(word) and previous == "-m"
                    else word for previous, word in zip(["", *command], command)
                ]
                found = [i for i, word in enumerate(command) if PROGRAM.search(word)]
                if found:
                    program = PROGRAM.search(command[found[0]]).group(1)
                    names = [word[2:].split("=")[0] for word in command[found[0] + 1:]
                             if word.startswith("--")]
                    commands.append((block.where, program, names))
    return commands


def program_flags(program):
    """The flag names `program` accepts: a program's as absl defines them, a bench's by grep."""
    name = os.path.basename(program)
    if name in PROGRAMS and (PROGRAMS[name] in (None, program)):
        load_program(name)
        try:
            return set(FLAGS)
        finally:
            remove_program_flags()
    source = open(os.path.join(REPO, program), encoding="utf-8").read()
    return set(re.findall(r"DEFINE_\w+\(\s*[\"'](\w+)[\"']", source)) | {"help", "helpfull"}


def test_shell_snippets_call_programs_that_exist_with_flags_they_define():
    commands = shell_commands()
    missing = [
        f"{where}: {program}" for where, program, _ in commands
        if program != "ema-keras-validate" and not os.path.isfile(os.path.join(REPO, program))
    ]
    assert not missing, missing
    known = {program: program_flags(program) for program in {c[1] for c in commands}}
    unknown = [
        f"{where}: {program} --{name}" for where, program, names in commands for name in names
        if name not in known[program]
        and not (name.startswith("no") and name[2:] in known[program])
    ]
    assert not unknown, unknown
