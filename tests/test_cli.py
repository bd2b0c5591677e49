"""The command line as a user runs it: exit codes and one-line errors for every bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgevision.cli import main

VERBS = ["models", "targets", "export", "check", "bench", "demo"]


def run(capsys, *argv):
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got: {err!r}"
    return lines[0]


def test_help_lists_every_verb(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for verb in VERBS:
        assert verb in out


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_help_teaches_with_an_example(capsys, verb):
    code, out, _ = run(capsys, verb, "--help")
    assert code == 0
    assert "Example" in out and f"edgevision {verb}" in out


def test_models_lists_variants_with_task_size_and_weights(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert {"fast-yolo", "fast-yolo-demo", "mobile-unet"} <= set(lines)
    assert "448x448" in lines["fast-yolo"] and "--weights" in lines["fast-yolo"]
    assert "224x224" in lines["fast-yolo-demo"] and "bundled" in lines["fast-yolo-demo"]
    assert "segment" in lines["mobile-unet"] and "bundled" in lines["mobile-unet"]


def test_targets_lists_one_line_per_profile(capsys):
    from edgevision.config import target_profiles

    code, out, _ = run(capsys, "targets")
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    profiles = target_profiles()
    assert sorted(r[0] for r in rows) == sorted(profiles)  # one line each, nothing else
    for r in rows:
        p = profiles[r[0]]
        assert r[1] == p.family and ",".join(p.runtimes) in r and ",".join(p.precisions) in r


@pytest.mark.parametrize("argv, message", [
    (["export", "yolo99"], "unknown model 'yolo99'"),
    (["export", "fast-yolo-demo", "--target", "tpu"], "unknown target 'tpu'"),
    (["export", "fast-yolo"], "ships no weights; pass --weights PATH"),
    (["export", "fast-yolo-demo", "--imgsz", "100"], "--imgsz 100: must be a positive multiple of"),
    (["export", "fast-yolo-demo", "--target", "cpu", "--precision", "fp16"], "cannot do fp16.*can do fp32, int8"),
    (["export", "fast-yolo-demo", "--precision", "int4"], "--precision int4: choose one of"),
    (["export", "fast-yolo", "--weights", "/nonexistent/w.pt"], "--weights /nonexistent/w.pt: no such file"),
    (["check", "/nonexistent/bundle"], "no such bundle"),
    (["export", "fast-yolo-demo", "--bogus-option"], "No such option"),
])
def test_bad_input_exits_2_with_a_clear_message(capsys, argv, message):
    import re

    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert re.search(message, err), err


def test_corrupt_and_mismatched_weights(capsys, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    code, _, err = run(capsys, "export", "fast-yolo", "--weights", str(corrupt), "--out", str(tmp_path / "b"))
    assert code == 2 and "not a readable PyTorch checkpoint" in one_line_error(err)
    other = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3), "decoder.bias": torch.zeros(2)}, other)
    code, _, err = run(capsys, "export", "fast-yolo", "--weights", str(other), "--out", str(tmp_path / "b"))
    assert code == 2
    line = one_line_error(err)
    assert "keys do not match" in line and "features.0.0.weight" in line and "unexpected 2" in line
    assert not (tmp_path / "b").exists()


def test_calibration_folder_errors(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "export", "fast-yolo-demo", "--calib", str(empty), "--random-weights", "--out", str(tmp_path / "b"))
    assert code == 2 and "no images found" in one_line_error(err)
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "notes.txt").write_text("hello")
    code, _, err = run(capsys, "export", "fast-yolo-demo", "--calib", str(texts), "--random-weights", "--out", str(tmp_path / "b"))
    assert code == 2 and "no images found" in one_line_error(err)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "photo.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    code, _, err = run(capsys, "export", "fast-yolo-demo", "--calib", str(broken), "--random-weights", "--out", str(tmp_path / "b"))
    *warnings, error = err.strip().splitlines()  # warnings (few images, the skipped file), then the error
    assert any("only 1 images" in w for w in warnings) and any("photo.jpg is not a readable image" in w
                                                               for w in warnings)
    assert code == 2 and error.startswith("error:") and "no readable images (1 files skipped)" in error
    assert not (tmp_path / "b").exists()


def test_unwritable_output_dir(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "export", "fast-yolo-demo", "--random-weights", "--out", str(blocker / "bundle"))
    assert code == 2 and "not a directory" in one_line_error(err)
    if sys.platform.startswith("linux"):  # sysfs refuses new files even to root
        code, _, err = run(capsys, "export", "fast-yolo-demo", "--random-weights", "--out", "/sys/edgevision-bundle")
        assert code == 2 and "cannot write in /sys" in one_line_error(err)


def test_existing_output_needs_force(capsys, tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    code, _, err = run(capsys, "export", "fast-yolo-demo", "--random-weights", "--out", str(out))
    assert code == 2 and "already exists; pass --force" in one_line_error(err)


def test_bundle_from_a_newer_format_is_refused(capsys, tmp_path):
    b = tmp_path / "future"
    b.mkdir()
    (b / "edgevision.json").write_text(json.dumps({"format_version": 42}))
    code, _, err = run(capsys, "check", str(b))
    assert code == 2 and "format_version 42 is newer" in one_line_error(err)


def test_internal_failure_is_one_line_exit_3_and_debug_shows_traceback(capsys, yolo_cpu_int8, tmp_path):
    import shutil

    import json

    broken = tmp_path / "broken"
    shutil.copytree(yolo_cpu_int8.path, broken)
    # an inconsistency nothing validates up front: the decode then fails on the artifact's real output
    meta = json.loads((broken / "edgevision.json").read_text())
    meta["head"]["grid"] = 5
    (broken / "edgevision.json").write_text(json.dumps(meta))
    code, _, err = run(capsys, "bench", str(broken), "--runs", "1", "--warmup", "0")
    assert code == 3
    line = one_line_error(err)
    assert line.startswith("error:") and "--debug" in line
    code, _, err = run(capsys, "--debug", "bench", str(broken), "--runs", "1", "--warmup", "0")
    assert code == 3 and "Traceback" in err


def test_console_script_is_installed():
    res = subprocess.run([sys.executable, "-m", "edgevision", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("edgevision ")
    exe = Path(sys.executable).with_name("edgevision")
    if exe.exists():
        res = subprocess.run([str(exe), "targets"], capture_output=True, text=True)
        assert res.returncode == 0 and "cpu" in res.stdout


@pytest.mark.slow
def test_ctrl_c_during_export_exits_130_and_writes_nothing(tmp_path):
    """Scripts and CI must not read an interrupted export as a success (it used to exit 0, silently)."""
    import signal

    out = tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-m", "edgevision", "export", "fast-yolo-demo", "--target", "intel-npu",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            # Ctrl-C's default action, whatever this run inherited: a shell starts background jobs
                            # (`pytest ... &`) with SIGINT ignored, and the export then rightly ignored it too
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # into the export proper: a fixed sleep raced the export itself, which a warm reference cache and a fast CPU
    # finished in under 8 s
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "preparing calibration data" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    assert any("preparing calibration data" in line for line in seen), "".join(seen) + rest + err
    assert proc.returncode == 130, err
    assert "interrupted; nothing was written" in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".b.")]


@pytest.mark.slow
def test_an_export_without_a_terminal_prints_one_line_per_step(tmp_path):
    """In CI, with no TTY, an export used to print nothing for minutes."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "edgevision", "export", "mobile-unet", "--precision", "fp32",
                          "--random-weights", "--out", str(tmp_path / "b")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    steps = [line for line in res.stdout.splitlines() if line.startswith("[") and " s] " in line]
    assert len(steps) >= 3 and any("exporting ONNX" in s for s in steps)
