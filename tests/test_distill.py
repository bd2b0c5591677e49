"""`edgevision distill` as a user runs it: a student encoder from unlabelled photos, resumable, exported as
efficient-sam-student with the teacher's decoder."""

from __future__ import annotations

import pytest
import torch

from conftest import SHARED
from edgevision.cli import main
from edgevision.models.registry import get_variant

PHOTOS = SHARED / "data" / "images"


@pytest.fixture(scope="module")
def teacher_weights(tmp_path_factory):
    """efficient-sam-demo's architecture with seeded random weights, saved as a user's checkpoint."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    torch.save({"model": get_variant("efficient-sam-demo").build().state_dict()}, path)
    return path


def _distill(out, teacher_weights, *extra):
    return main(["distill", "efficient-sam-demo", "--weights", str(teacher_weights), "--data", str(PHOTOS),
                 "--out", str(out), "--imgsz", "128", "--dim", "48", "--depth", "2", "--batch", "2", *extra])


@pytest.mark.slow
def test_a_student_learns_the_teacher_embeddings_resumes_and_exports(capsys, teacher_weights, tmp_path):
    from edgevision.models.loading import build_model

    out = tmp_path / "student.pt"
    assert _distill(out, teacher_weights, "--steps", "30", "--lr", "2e-3") == 0, capsys.readouterr().err
    state = torch.load(out, weights_only=True)
    config = state["edgevision_config"]
    assert config["img_size"] == 128 and config["embed_dim"] == 48 and config["decoder_grid"] == 32
    teacher = build_model(get_variant("efficient-sam-demo"), weights=teacher_weights)
    student = build_model(get_variant("efficient-sam-student"), weights=out)
    # the decoder is the teacher's, unchanged
    for k, v in teacher.mask_decoder.state_dict().items():
        assert torch.equal(v, student.mask_decoder.state_dict()[k]), k
    x_t = torch.randn(1, 3, 512, 512)  # the demo teacher runs at 512 px: a 32 x 32 grid
    x_s = torch.nn.functional.interpolate(x_t, size=(128, 128), mode="area")
    with torch.no_grad():
        assert student.embed(x_s).shape == teacher.embed(x_t).shape == (1, 128, 32, 32)

    # resuming continues from the saved step
    first = torch.load(out.with_name("student.pt.state.pt"), weights_only=True)["step"]
    assert first == 30
    assert _distill(out, teacher_weights, "--steps", "40", "--lr", "2e-3", "--resume") == 0
    printed = capsys.readouterr()
    assert "resumed from" in printed.err and "at step 30" in printed.err
    assert torch.load(out.with_name("student.pt.state.pt"), weights_only=True)["step"] == 40

    bundle = tmp_path / "bundle"
    assert main(["export", "efficient-sam-student", "--weights", str(out), "--target", "cpu", "--precision", "fp32",
                 "--out", str(bundle)]) == 0, capsys.readouterr().err
    import json

    meta = json.loads((bundle / "edgevision.json").read_text())
    assert meta["imgsz"] == 128 and list(meta["graphs"]) == ["image_encoder", "mask_decoder"]
    assert meta["graphs"]["image_encoder"]["outputs"][0]["shape"] == [1, 128, 32, 32]
    # judged on the scenes its teacher was trained and judged on (256 px), not on scenes of its own 128 px input
    assert student.scene_size == meta["scene_size"] == 256
    assert "256px" in meta["reference"]["data"]


def test_distill_bad_input_exits_2(capsys, teacher_weights, tmp_path):
    assert main(["distill", "deit-tiny-demo", "--data", str(PHOTOS), "--out", str(tmp_path / "s.pt")]) == 2
    assert "distill takes a promptable segmentation model" in capsys.readouterr().err
    assert _distill(tmp_path / "s.pt", teacher_weights, "--resume") == 2
    assert "no training state" in capsys.readouterr().err
    assert main(["distill", "efficient-sam-demo", "--weights", str(teacher_weights), "--data",
                 str(tmp_path / "none"), "--out", str(tmp_path / "s.pt")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["distill", "efficient-sam-demo", "--weights", str(teacher_weights), "--data",
                 str(tmp_path / "empty"), "--out", str(tmp_path / "s.pt")]) == 2
    assert "no readable images" in capsys.readouterr().err
    assert main(["export", "efficient-sam-student", "--weights", str(teacher_weights), "--out",
                 str(tmp_path / "b")]) == 2
    assert "no edgevision_config in it" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_keeps_the_student_and_says_so_once(teacher_weights, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "student.pt"
    proc = subprocess.Popen([sys.executable, "-m", "edgevision", "distill", "efficient-sam-demo", "--weights",
                             str(teacher_weights), "--data", str(PHOTOS), "--out", str(out), "--imgsz", "128",
                             "--dim", "48", "--depth", "2", "--batch", "2", "--steps", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in proc.stderr:  # training starts after the images are read
        seen.append(line)
        if "images from" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = "".join(seen) + err
    assert proc.returncode == 130, err
    assert f"interrupted; kept {out}" in err and "nothing was written" not in err
    assert out.is_file() and out.with_name("student.pt.state.pt").is_file()


def test_teacher_blocks_are_evenly_spaced_and_keep_the_first_and_last():
    from edgevision.distill import teacher_blocks
    from edgevision.errors import BadInput

    assert teacher_blocks(6, 6) == [0, 1, 2, 3, 4, 5]
    assert teacher_blocks(6, 3) == [0, 2, 5]
    assert teacher_blocks(12, 4) == [0, 4, 7, 11]
    assert teacher_blocks(6, 1) == [5]
    with pytest.raises(BadInput, match="--depth 7"):
        teacher_blocks(6, 7)


def test_a_student_started_from_the_teacher_reproduces_it_at_its_size_and_depth(teacher_weights):
    from edgevision.distill import init_from_teacher
    from edgevision.models.loading import build_model

    teacher = build_model(get_variant("efficient-sam-demo"), weights=teacher_weights).eval()
    student = get_variant("efficient-sam-demo").build().eval()  # same shape, other random weights
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        assert not torch.allclose(student.embed(x), teacher.embed(x), atol=1e-3)
        assert init_from_teacher(student.image_encoder, teacher.image_encoder) == list(range(6))
        torch.testing.assert_close(student.embed(x), teacher.embed(x), rtol=0, atol=1e-5)


def test_init_from_teacher_through_the_cli_copies_the_chosen_blocks(capsys, teacher_weights, tmp_path):
    from edgevision.models.loading import build_model

    out = tmp_path / "student.pt"
    # --lr 0: the one step changes nothing, so the student is exactly its starting point
    args = ["distill", "efficient-sam-demo", "--weights", str(teacher_weights), "--data", str(PHOTOS), "--out",
            str(out), "--imgsz", "128", "--dim", "192", "--heads", "3", "--depth", "2", "--batch", "1",
            "--steps", "1", "--lr", "0", "--init-from-teacher"]
    assert main(args) == 0, capsys.readouterr().err
    assert "started from the teacher's (blocks [0, 5])" in capsys.readouterr().err
    teacher = build_model(get_variant("efficient-sam-demo"), weights=teacher_weights).image_encoder
    student = build_model(get_variant("efficient-sam-student"), weights=out).image_encoder
    for s_block, t_block in zip(student.blocks, (teacher.blocks[0], teacher.blocks[5])):
        for k, v in t_block.state_dict().items():
            assert torch.equal(s_block.state_dict()[k], v), k
    assert torch.equal(student.neck[2].weight, teacher.neck[2].weight)
    assert student.pos_embed.shape == (1, 1 + 8 * 8, 192)  # resized from the teacher's 16 x 16

    assert main([*args[:-1], "--dim", "48", "--init-from-teacher", "--out", str(tmp_path / "s2.pt")]) == 2
    assert "--init-from-teacher: the student's --dim 48 --heads 3 must equal the teacher's (192, 3)" in \
        capsys.readouterr().err


def test_own_grid_runs_the_decoder_at_the_student_grid_and_exports_its_mask_size(capsys, teacher_weights, tmp_path):
    import json

    from edgevision.models.loading import build_model

    out = tmp_path / "student.pt"
    assert _distill(out, teacher_weights, "--steps", "2", "--own-grid") == 0, capsys.readouterr().err
    assert torch.load(out, weights_only=True)["edgevision_config"]["decoder_grid"] == 8  # 128 px / 16
    student = build_model(get_variant("efficient-sam-student"), weights=out).eval()
    with torch.no_grad():
        assert student.embed(torch.randn(1, 3, 128, 128)).shape == (1, 128, 8, 8)
    bundle = tmp_path / "bundle"
    assert main(["export", "efficient-sam-student", "--weights", str(out), "--target", "cpu", "--precision", "fp32",
                 "--out", str(bundle)]) == 0, capsys.readouterr().err
    meta = json.loads((bundle / "edgevision.json").read_text())
    assert meta["graphs"]["image_encoder"]["outputs"][0]["shape"] == [1, 128, 8, 8]
    assert meta["head"]["mask_size"] == 32


def test_teacher_imgsz_makes_the_targets_from_the_teacher_at_that_size(teacher_weights, tmp_path):
    from edgevision.distill import distill

    def first_loss(out, **extra):
        losses = []
        distill("efficient-sam-demo", PHOTOS, out, teacher_weights=teacher_weights, img_size=128, embed_dim=192,
                num_heads=3, depth=6, batch=2, steps=1, lr=0.0, from_teacher=True, own_grid=True,
                on_step=lambda s: losses.append(s.loss), **extra)
        return losses[0]

    # a student that is the whole teacher, at the teacher's size: it matches its own targets exactly ...
    assert first_loss(tmp_path / "same.pt", teacher_img_size=128) < 1e-9
    # ... but not the 512-px teacher's embeddings area-resized to its 8 x 8 grid
    assert first_loss(tmp_path / "resized.pt") > 1e-4
    assert torch.load(tmp_path / "same.pt.state.pt", weights_only=True)["teacher_img_size"] == 128


def test_teacher_imgsz_bad_size_or_a_resume_at_another_size_exits_2(capsys, teacher_weights, tmp_path):
    out = tmp_path / "s.pt"
    assert _distill(out, teacher_weights, "--teacher-imgsz", "100") == 2
    err = capsys.readouterr().err
    assert "--teacher-imgsz 100: must be a positive multiple of the patch size 16" in err
    assert len(err.strip().splitlines()) == 1
    assert _distill(out, teacher_weights, "--steps", "1", "--teacher-imgsz", "128") == 0, capsys.readouterr().err
    assert _distill(out, teacher_weights, "--steps", "2", "--teacher-imgsz", "256", "--resume") == 2
    assert "was started with the teacher at 128 px; repeat --teacher-imgsz 128" in capsys.readouterr().err
    assert _distill(out, teacher_weights, "--steps", "2", "--resume") == 2  # the default is the teacher's 512 px
    assert "repeat --teacher-imgsz 128" in capsys.readouterr().err
    assert torch.load(out.with_name("s.pt.state.pt"), weights_only=True)["step"] == 1
