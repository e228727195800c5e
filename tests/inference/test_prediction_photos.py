"""predict.py on the photos people have: folders read recursively, every format, the model's
colours.

Through the real program (recipes/predict.py in a subprocess) and the library.
"""

import os

import numpy as np
import pytest
from PIL import Image

from ema_keras.data.photos import load_photo
from ema_keras.inference.prediction import predict_files, predict_label_map
from ema_keras.models import EMANetImageSegmenter, set_class_info
from ema_keras.visualize import label_colours, with_legend
from tests.inference.test_prediction import run_predict, snapshot

NAMES = ["background", "scratch", "dent"]
PALETTE = [[0, 0, 0], [250, 10, 10], [10, 10, 250]]
SIZE = (24, 32)  # height, width


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A 3-class model that carries its class names and palette, saved as a .keras file."""
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=3, seed=0)
    set_class_info(model, NAMES, PALETTE)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return model, path


def pixels(seed, channels=3):
    return np.random.default_rng(seed).integers(0, 256, size=SIZE + (channels,), dtype=np.uint8)


def write_photo_folder(root):
    """A folder as phones and tools leave it; returns {relative path: what predict must do}."""
    (root / "day1" / "sub").mkdir(parents=True)
    (root / ".thumbnails").mkdir()
    Image.fromarray(pixels(0)).save(root / "a.jpg")
    Image.fromarray(pixels(1, 4)).save(root / "day1" / "rgba.png")  # alpha: dropped, noted
    sixteen = (pixels(2, 1)[..., 0].astype(np.uint16) * 257)
    Image.fromarray(sixteen).save(root / "day1" / "gray16.png")  # 16-bit: scaled, noted
    Image.fromarray(pixels(3)).save(root / "day1" / "sub" / "b.webp")
    Image.fromarray(pixels(4)).save(root / "day1" / "sub" / "c.TIF")
    frames = [Image.fromarray(pixels(5)).convert("P"), Image.fromarray(pixels(6)).convert("P")]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "day1" / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not a photo")  # no photo extension: not listed
    Image.fromarray(pixels(7)).save(root / ".thumbnails" / "t.jpg")  # hidden: not listed
    Image.fromarray(pixels(8)).save(root / ".hidden.jpg")
    return {
        "a": None,
        "day1/rgba": "alpha dropped",
        "day1/gray16": "16-bit",
        "day1/sub/b": None,
        "day1/sub/c": None,
        "anim": "first of 2 frames",
    }


def test_predict_reads_a_folder_tree_of_photos_skips_the_unreadable_and_says_so(
    model_file, tmp_path
):
    model, path = model_file
    photos = tmp_path / "photos"
    expected = write_photo_folder(photos)
    before = {name: snapshot(photos / name) for name in ("", "day1", "day1/sub")}
    out = tmp_path / "out"
    result = run_predict(f"--model={path}", f"--inputs={photos}", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    # Both unreadable files listed together, before any prediction.
    skip_at = lines.index("Skipping 2 unreadable of 8 images:")
    listed = lines[skip_at + 1 : skip_at + 3]
    assert any(line.startswith(f"  {photos / 'broken.jpg'}: ") for line in listed)
    assert any(line.startswith(f"  {photos / 'day1' / 'empty.png'}: ") for line in listed)
    assert f"{photos / 'day1' / 'rgba.png'}: RGBA: alpha dropped" in lines
    assert any(line.startswith(f"{photos / 'day1' / 'gray16.png'}: 16-bit") for line in lines)
    assert "6 label maps written, 3 converted on reading, 2 skipped (unreadable)" in (
        result.stdout
    )
    written = sorted(
        os.path.relpath(os.path.join(parent, name), out)
        for parent, _, names in os.walk(out)
        for name in names
    )
    assert written == sorted(
        f"{stem}{suffix}" for stem in expected for suffix in (".png", "_overlay.jpg")
    )
    for stem, source in (("a", "a.jpg"), ("day1/rgba", "day1/rgba.png"), ("anim", "anim.gif")):
        image, _ = load_photo(photos / source)
        with Image.open(out / f"{stem}.png") as label_png:
            label = np.asarray(label_png)
            palette = np.asarray(label_png.getpalette(), np.uint8).reshape(-1, 3)[:3]
        assert label.shape == SIZE
        np.testing.assert_array_equal(label, predict_label_map(model, image))
        np.testing.assert_array_equal(palette, PALETTE)  # the model's colours, not VOC's
    assert {name: snapshot(photos / name) for name in before} == before  # inputs untouched


def test_overlays_carry_a_legend_of_the_classes_shown_in_the_models_colours(model_file, tmp_path):
    model, _ = model_file
    Image.fromarray(pixels(0)).save(tmp_path / "a.png")
    report = predict_files(model, [str(tmp_path / "a.png")], str(tmp_path / "out"))
    (label_path,) = report.written
    label = np.asarray(Image.open(label_path))
    with Image.open(tmp_path / "out" / "a_overlay.jpg") as picture:
        width, height = picture.size
    assert height >= SIZE[0] and width > SIZE[1]  # the legend strip on the right
    colours = label_colours("voc", model)
    assert colours.names == tuple(NAMES)

    def swatches(label_map):
        legend = with_legend(np.zeros(SIZE + (3,), np.uint8), np.array(label_map), colours)
        strip = {tuple(colour) for colour in legend[:, SIZE[1]:].reshape(-1, 3).tolist()}
        return [i for i, colour in enumerate(PALETTE) if i and tuple(colour) in strip]

    assert swatches([[1, 2, 255]]) == [1, 2]  # a swatch per class shown, none for 255
    assert swatches([[1, 1, 0]]) == [1]  # and none for a class not shown
    assert label.shape == SIZE
    without = predict_files(model, [str(tmp_path / "a.png")], str(tmp_path / "plain"), legend=False)
    with Image.open(tmp_path / "plain" / "a_overlay.jpg") as picture:
        assert picture.size == (SIZE[1], SIZE[0])
    assert len(without.written) == 1


def test_a_folder_of_nothing_readable_is_refused_and_nothing_is_written(model_file, tmp_path):
    _, path = model_file
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"not a jpeg")
    (photos / "b.webp").write_bytes(b"RIFF....")
    out = tmp_path / "out"
    result = run_predict(f"--model={path}", f"--inputs={photos}", f"--output_dir={out}")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Skipping 2 unreadable of 2 images:" in result.stdout
    assert result.stderr.strip().splitlines()[-1].endswith(
        "none of the 2 images can be read (listed above)"
    )
    assert not out.exists()
