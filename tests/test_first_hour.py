"""Faults a new user met in the first hour: each exits with the right code, says so in one line, and leaves
nothing behind."""

from __future__ import annotations

import shutil

import pytest

from edgevision.cli import main
from edgevision.data.video import write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "shapes.mp4"
    write_video(path, frames=12, seed=1)
    return path


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_run_out_that_is_a_directory_fails_before_the_first_frame(capsys, yolo_cpu_int8, clip, tmp_path):
    taken = tmp_path / "results"
    taken.mkdir()
    jsonl = tmp_path / "frames.jsonl"
    assert main(["run", str(yolo_cpu_int8.path), "--source", str(clip), "--out", str(taken),
                 "--jsonl", str(jsonl)]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"--out {taken}: is a directory" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # no partial video, no JSONL
    assert list(taken.iterdir()) == []


def test_a_video_that_cannot_be_saved_at_the_end_fails_the_run_and_leaves_no_partial(yolo_cpu_int8, clip, tmp_path):
    from edgevision.errors import EdgevisionError
    from edgevision.pipeline import Pipeline, VideoFileSink, open_source
    from edgevision.predictor import Predictor

    out = tmp_path / "out.mp4"
    sink = VideoFileSink(out, 15.0)

    def something_takes_the_name(frame):
        if frame.seq == 2:
            out.mkdir()  # another program creates a folder there mid-run

    pipe = Pipeline(open_source(str(clip)), Predictor(yolo_cpu_int8), [sink], on_frame=something_takes_the_name)
    with pytest.raises(EdgevisionError, match="cannot save the video") as e:
        pipe.run(handle_signals=False)
    assert e.value.exit_code == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"] and out.is_dir()  # the partial is gone


def test_a_truncated_archive_is_bad_input(capsys, yolo_cpu_int8, tmp_path, monkeypatch):
    from edgevision.bundle import pack_bundle

    monkeypatch.setenv("EDGEVISION_CACHE", str(tmp_path / "cache"))
    archive = pack_bundle(yolo_cpu_int8.path, tmp_path / "b.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    for argv in (["check", str(cut), "--no-reference"], ["--debug", "bench", str(cut), "--runs", "1"]):
        assert main(argv) == 2
        assert "truncated or corrupt archive; copy it again" in one_line(capsys.readouterr().err)
    assert not list((tmp_path / "cache").rglob("edgevision.json"))


@pytest.mark.slow  # the bundle fixtures are requested by name, so conftest cannot see that they export
@pytest.mark.parametrize("fixture, name", [("yolo_cpu_int8", "model.onnx"), ("yolo_npu_int8", "model.xml"),
                                           ("yolo_npu_int8", "model.bin")])
def test_a_corrupt_artifact_is_bad_input(capsys, request, tmp_path, fixture, name):
    bundle = request.getfixturevalue(fixture)
    copy = tmp_path / "b"
    shutil.copytree(bundle.path, copy)
    data = (copy / name).read_bytes()
    (copy / name).write_bytes(data[: len(data) // 3])
    assert main(["check", str(copy), "--no-reference"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "is corrupt or unreadable" in line and "re-export the bundle" in line


def test_a_corrupt_tflite_is_bad_input(capsys, export_once, tmp_path):
    bundle = export_once("fast-yolo-demo", "rpi", "int8")
    copy = tmp_path / "b"
    shutil.copytree(bundle.path, copy)
    (copy / "model.tflite").write_bytes(b"TFL3" + b"\0" * 64)
    assert main(["check", str(copy), "--no-reference"]) == 2
    assert "is corrupt or unreadable by litert" in one_line(capsys.readouterr().err)


def test_serve_port_out_of_range_names_the_range(capsys, yolo_cpu_int8, clip):
    assert main(["run", str(yolo_cpu_int8.path), "--source", str(clip), "--serve", "99999"]) == 2
    assert "--serve 99999: not a TCP port; give one from 1 to 65535" in one_line(capsys.readouterr().err)


def test_a_folder_without_a_readable_image_is_bad_input_and_leaves_no_outputs(capsys, yolo_cpu_int8, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not a jpeg")
    (folder / "b.png").write_bytes(b"")
    jsonl, stats = tmp_path / "r.jsonl", tmp_path / "s.json"
    assert main(["run", str(yolo_cpu_int8.path), "--source", str(folder), "--jsonl", str(jsonl),
                 "--stats", str(stats)]) == 2
    assert f"no readable images in {folder} (2 files skipped)" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no 0-byte JSONL, no stats
