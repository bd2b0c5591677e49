"""`edgevision run` and the Pipeline API on generated videos, image folders, broken files and flaky sources."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from edgevision.check.metrics import detection_map
from edgevision.cli import main
from edgevision.data.video import MovingShapesVideo, write_video
from edgevision.ops.results import Detections
from edgevision.pipeline import JsonlSink, Pipeline, SourceLost, VideoFileSink, open_source
from edgevision.pipeline.sources import OpenCVSource, SourceInfo
from edgevision.predictor import Predictor


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "shapes.mp4"
    truth = write_video(path, frames=40, seed=3)
    return path, truth


def frame_count(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_detections_on_a_generated_video_match_the_known_objects(capsys, yolo_cpu_int8, clip, tmp_path):
    path, truth = clip
    out, jsonl, stats = tmp_path / "out.mp4", tmp_path / "r.jsonl", tmp_path / "stats.json"
    code = main(["run", str(yolo_cpu_int8.path), "--source", str(path), "--out", str(out), "--jsonl", str(jsonl),
                 "--stats", str(stats), "--conf", "0.05"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "processed 40" in printed and "end-to-end FPS" in printed and "capture -> output" in printed
    records = read_jsonl(jsonl)
    assert [r["frame"] for r in records] == list(range(40))  # every frame, in order
    preds = [Detections(np.array([d["box"] for d in r["detections"]], np.float32).reshape(-1, 4),
                        np.array([d["score"] for d in r["detections"]], np.float32),
                        np.array([d["class_id"] for d in r["detections"]], np.int64)) for r in records]
    scores = detection_map(truth.boxes, truth.labels, preds, 5)
    assert scores["map50"] > 80, scores
    assert frame_count(out) == 40  # the annotated video is complete and playable
    s = json.loads(stats.read_text())
    assert s["schema_version"] == 1 and s["frames_processed"] == 40 and s["fps"] > 0
    assert {"capture", "preprocess", "infer", "postprocess", "render", "end_to_end"} <= set(s["latency_ms"])


def test_annotated_output_shows_the_boxes(yolo_cpu_int8, clip, tmp_path):
    """The overlay is really drawn: annotated frames differ from the input exactly around the objects."""
    path, truth = clip
    out = tmp_path / "ann.mp4"
    assert main(["run", str(yolo_cpu_int8.path), "--source", str(path), "--out", str(out), "--max-frames", "5"]) == 0
    cap_in, cap_out = cv2.VideoCapture(str(path)), cv2.VideoCapture(str(out))
    _, a = cap_in.read()
    _, b = cap_out.read()
    diff = np.abs(a.astype(int) - b.astype(int)).sum(2) > 60
    x0, y0, x1, y1 = truth.boxes[0][0].astype(int)
    ring = diff[max(y0 - 6, 0): y1 + 6, max(x0 - 6, 0): x1 + 6]
    assert ring.mean() > 0.02  # box outline / label drawn around the first object


def test_image_folder_with_a_corrupt_file(yolo_cpu_int8, tmp_path):
    video = MovingShapesVideo(seed=1)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), cv2.cvtColor(video.frame(i)[0], cv2.COLOR_RGB2BGR))
    (folder / "003b.jpg").write_bytes(b"\xff\xd8broken")
    jsonl = tmp_path / "r.jsonl"
    predictor = Predictor(yolo_cpu_int8)
    summary = Pipeline(open_source(str(folder)), predictor, [JsonlSink(jsonl)]).run()
    assert summary["frames_processed"] == 6 and summary["frames_corrupt"] == 1 and not summary["realtime"]
    assert len(read_jsonl(jsonl)) == 6
    glob_summary = Pipeline(open_source(str(folder / "00[0-2].jpg")), predictor, []).run()
    assert glob_summary["frames_processed"] == 3


def test_truncated_video_ends_cleanly(yolo_cpu_int8, tmp_path):
    full = tmp_path / "full.avi"  # MJPG in AVI: a cut file keeps its header and plays up to the cut
    write_video(full, frames=40, seed=3)
    data = full.read_bytes()
    broken = tmp_path / "truncated.avi"
    broken.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.mp4"
    code = main(["run", str(yolo_cpu_int8.path), "--source", str(broken), "--out", str(out),
                 "--stats", str(tmp_path / "s.json")])
    assert code == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert 5 < s["frames_processed"] < 40
    assert frame_count(out) == s["frames_processed"]


def test_a_video_cut_before_its_index_is_bad_input(capsys, yolo_cpu_int8, clip, tmp_path):
    path, _ = clip
    broken = tmp_path / "cut.mp4"  # MP4 keeps its index (moov) at the end: without it nothing is readable
    broken.write_bytes(path.read_bytes()[:5000])
    assert main(["run", str(yolo_cpu_int8.path), "--source", str(broken)]) == 2
    assert "cannot be opened" in capsys.readouterr().err


class FlakyCapture:
    """Test double for a camera's *transport* (no camera exists here): frames, then a dead link that refuses
    to reopen a few times, then frames again. The pipeline code under test is the real one."""

    def __init__(self, script):
        self.script = script  # shared state across reopenings

    def isOpened(self):  # noqa: N802 - cv2.VideoCapture's naming
        s = self.script
        if s["dead"] and s["refuse_opens"] > 0:
            s["refuse_opens"] -= 1
            return False
        s["dead"] = False
        return True

    def read(self):
        s = self.script
        s["reads"] += 1
        if s["reads"] in s["fail_at"] or s["reads"] > s["total"]:
            s["dead"] = True
            return False, None
        img, _, _ = s["video"].frame(s["reads"])
        return True, cv2.cvtColor(img, cv2.COLOR_RGB2BGR)

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_WIDTH: 640, cv2.CAP_PROP_FRAME_HEIGHT: 480}.get(prop, 0)

    def release(self):
        pass


def flaky_source(script):
    return OpenCVSource("rtsp://camera.invalid/stream", SourceInfo("flaky camera", live=True),
                        capture_factory=lambda *_: FlakyCapture(script))


def test_a_camera_that_drops_out_and_comes_back(yolo_cpu_int8):
    # the link dies at read 10; the first two reopen attempts fail (backoff), the third works
    script = {"reads": 0, "fail_at": {10}, "refuse_opens": 2, "dead": False, "total": 10_000,
              "video": MovingShapesVideo(seed=2)}
    src = flaky_source(script)
    pipe = Pipeline(src, Predictor(yolo_cpu_int8), [], realtime=False, max_frames=25, max_reconnects=5)
    pipe.reconnector.base_delay = 0.01
    summary = pipe.run()
    assert summary["frames_processed"] == 25
    assert summary["reconnects"] == 3  # two refused reopenings, then the one that worked


def test_a_camera_that_never_comes_back_exits_3(yolo_cpu_int8):
    script = {"reads": 0, "fail_at": set(), "refuse_opens": 10**6, "dead": False, "total": 5,
              "video": MovingShapesVideo(seed=2)}
    src = flaky_source(script)
    pipe = Pipeline(src, Predictor(yolo_cpu_int8), [], realtime=True, max_reconnects=2)
    pipe.reconnector.base_delay = 0.01
    with pytest.raises(SourceLost, match="lost after 2 reconnects") as e:
        pipe.run()
    assert e.value.exit_code == 3


class SlowPredictor:
    """Wraps a real predictor with a slower inference, to force realtime drops."""

    def __init__(self, inner, delay):
        self.inner, self.delay = inner, delay
        self.labels = inner.labels
        self.preprocess, self.postprocess = inner.preprocess, inner.postprocess

    def infer(self, batch):
        time.sleep(self.delay)
        return self.inner.infer(batch)


def test_realtime_mode_drops_the_oldest_and_counts_drops(yolo_cpu_int8, tmp_path):
    script = {"reads": 0, "fail_at": set(), "refuse_opens": 0, "dead": False, "total": 10_000,
              "video": MovingShapesVideo(seed=4)}
    seen = []
    pipe = Pipeline(flaky_source(script), SlowPredictor(Predictor(yolo_cpu_int8), 0.03), [], realtime=True,
                    max_frames=60, on_frame=lambda f: seen.append(f.index))
    summary = pipe.run()
    assert summary["frames_read"] == 60
    assert summary["frames_dropped"] > 10
    assert summary["frames_processed"] + summary["frames_dropped"] == 60
    assert seen == sorted(seen) and seen[-1] == 59  # order kept; the newest frame is never the one dropped


def test_stateful_processor_sees_frames_in_order_with_parallel_postprocess(yolo_cpu_int8, clip):
    path, _ = clip
    order = []

    def count_objects(frame, result):
        order.append(frame.index)
        return result

    pipe = Pipeline(open_source(str(path)), Predictor(yolo_cpu_int8), [], processors=[count_objects],
                    postprocess_workers=3)
    assert pipe.run()["frames_processed"] == 40
    assert order == list(range(40))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mjpeg_client_on_localhost_reads_frames(yolo_cpu_int8, tmp_path):
    from edgevision.pipeline.sinks import MjpegServer

    long_clip = tmp_path / "long.mp4"
    write_video(long_clip, frames=300, seed=5)
    port = free_port()
    server = MjpegServer(port)
    assert server.address[0] == "127.0.0.1"  # localhost unless --host says otherwise
    pipe = Pipeline(open_source(str(long_clip)), Predictor(yolo_cpu_int8), [server], realtime=True)
    t = threading.Thread(target=pipe.run, kwargs={"handle_signals": False})
    t.start()
    try:
        frames = []
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            buf = b""
            while len(frames) < 3:
                buf += resp.read(4096)
                start = buf.find(b"\xff\xd8")
                end = buf.find(b"\xff\xd9", start + 2)
                if start >= 0 and end > start:
                    frames.append(cv2.imdecode(np.frombuffer(buf[start:end + 2], np.uint8), cv2.IMREAD_COLOR))
                    buf = buf[end + 2:]
    finally:
        pipe.stop.set()
        t.join(timeout=20)
    assert len(frames) == 3 and all(f is not None and f.shape == (480, 640, 3) for f in frames)


def run_then_signal(bundle, tmp_path, sig, *extra: str):
    """`edgevision run` on a 900-frame clip with --out and --jsonl (and ``extra``), sent ``sig`` once some frames
    are out; returns (process, stderr, video path, JSONL path)."""
    long_clip = tmp_path / "long.mp4"
    write_video(long_clip, frames=900, seed=6)
    out, jsonl = tmp_path / "out.mp4", tmp_path / "r.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edgevision", "run", str(bundle.path), "--source", str(long_clip),
                             "--out", str(out), "--jsonl", str(jsonl), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (jsonl.exists() and jsonl.stat().st_size > 2000):
        time.sleep(0.2)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    return proc, stderr, out, jsonl


def test_sigterm_stops_cleanly_with_a_playable_video_and_flushed_jsonl(yolo_cpu_int8, tmp_path):
    stats = tmp_path / "s.json"
    proc, stderr, out, jsonl = run_then_signal(yolo_cpu_int8, tmp_path, signal.SIGTERM, "--stats", str(stats))
    assert proc.returncode == 0, stderr
    s = json.loads(stats.read_text())
    assert 0 < s["frames_processed"] < 900
    records = read_jsonl(jsonl)  # every line parses: flushed whole
    assert len(records) == s["frames_processed"]
    assert frame_count(out) == s["frames_processed"]
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("argv, message", [
    (["--source", "/nonexistent/clip.mp4"], "no such file, folder, camera or stream"),
    (["--source", "gst:videotestsrc ! appsink"], "no GStreamer support"),
    (["--source", "picamera2:"], "picamera2"),
    (["--source", "0", "--show"], "--serve"),
])
def test_bad_sources_and_outputs_exit_2(capsys, yolo_cpu_int8, argv, message):
    code = main(["run", str(yolo_cpu_int8.path), *argv, "--max-frames", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err


def test_unopenable_camera_exits_2(capsys, yolo_cpu_int8):
    assert main(["run", str(yolo_cpu_int8.path), "--source", "/dev/video99", "--max-frames", "1"]) == 2
    assert "cannot be opened" in capsys.readouterr().err


def test_every_frame_default_for_files_realtime_for_cameras():
    assert not open_source(__file__).info.live
    assert open_source("0").info.live and open_source("rtsp://user:pw@10.0.0.1/s").info.live
    assert "pw" not in open_source("rtsp://user:pw@10.0.0.1/s").info.description  # credentials not logged


def test_video_sink_writes_under_a_temp_name_until_closed(tmp_path):
    sink = VideoFileSink(tmp_path / "v.mp4", 10)
    sink.write(np.zeros((48, 64, 3), np.uint8), {})
    assert not (tmp_path / "v.mp4").exists()
    sink.close()
    assert frame_count(tmp_path / "v.mp4") == 1


class FiniteMjpegCamera:
    """A network camera on 127.0.0.1 that streams ``frames`` MJPEG frames and then goes away: the listening
    socket closes, so every reconnect is refused."""

    def __init__(self, frames: int, fps: float = 60.0) -> None:
        self.frames, self.fps = frames, fps
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(60)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/stream.mjpg"
        self.gone_at: float | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        video = MovingShapesVideo(seed=8)
        sent = 0
        try:
            while sent < self.frames:
                conn, _ = self.sock.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
                    try:
                        while sent < self.frames:
                            rgb, _, _ = video.frame(sent)
                            jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
                            conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                            sent += 1
                            time.sleep(1 / self.fps)
                    except OSError:
                        continue  # the client hung up (probing); serve the rest to the next connection
        finally:
            self.sock.close()
            self.gone_at = time.monotonic()


@pytest.fixture(scope="module")
def slow_bundle(tmp_path_factory):
    """The demo detector at 1344 px in FP32: about 10 GMAC a frame, so inference is the slow stage, as it
    always is on a Raspberry Pi."""
    from edgevision.export import export_bundle

    return export_bundle("fast-yolo-demo", "cpu", "fp32", tmp_path_factory.mktemp("slow") / "b", imgsz=1344,
                         measure_reference=False, golden=0)


def test_a_lost_camera_ends_the_run_with_exit_3_while_inference_is_the_slow_stage(slow_bundle):
    """The capture stage fails with the queue to inference full; every stage must still end and the process
    exit 3 soon after the last refused reconnect (it used to sit idle forever, deaf to SIGTERM)."""
    camera = FiniteMjpegCamera(frames=100, fps=1000)  # capture far ahead of inference
    proc = subprocess.Popen([sys.executable, "-m", "edgevision", "run", str(slow_bundle.path), "--source",
                             camera.url, "--max-reconnects", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("edgevision run hung after the camera was lost")
    exited = time.monotonic()
    assert proc.returncode == 3, err[-2000:]
    assert "lost after 0 reconnects" in err
    assert camera.gone_at is not None and exited - camera.gone_at < 10


def test_sigterm_ends_a_run_while_the_camera_is_reconnecting(slow_bundle):
    """SIGTERM ends a run in any state: here, waiting out the backoff of a camera that went away."""
    camera = FiniteMjpegCamera(frames=20)
    proc = subprocess.Popen([sys.executable, "-m", "edgevision", "run", str(slow_bundle.path), "--source",
                             camera.url, "--max-reconnects", "50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 90
        while camera.gone_at is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # the run now retries with growing backoff
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("SIGTERM did not end the run")
    assert proc.returncode in (0, 130, 143)


def mixed_folder(root):
    """What real folders hold: a square photo of another size than the model's, grayscale, RGBA and 16-bit
    PNGs, and a file that is not an image at all."""
    folder = root / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "a_square.png"), rng.integers(0, 256, (512, 512, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "b_gray.png"), rng.integers(0, 256, (300, 400), dtype=np.uint8))
    cv2.imwrite(str(folder / "c_rgba.png"), rng.integers(0, 256, (300, 400, 4), dtype=np.uint8))
    cv2.imwrite(str(folder / "d_gray16.png"), rng.integers(0, 65536, (240, 320), dtype=np.uint16))
    cv2.imwrite(str(folder / "e_rgb16.png"), rng.integers(0, 65536, (240, 320, 3), dtype=np.uint16))
    (folder / "f_broken.jpg").write_bytes(b"not a jpeg")
    return folder


def test_a_folder_of_mixed_images_runs_and_counts_the_unreadable_one(capsys, yolo_cpu_int8, tmp_path):
    folder = mixed_folder(tmp_path)
    jsonl, stats = tmp_path / "r.jsonl", tmp_path / "s.json"
    assert main(["run", str(yolo_cpu_int8.path), "--source", str(folder), "--jsonl", str(jsonl),
                 "--stats", str(stats)]) == 0
    summary = json.loads(stats.read_text())
    assert summary["frames_processed"] == 5 and summary["frames_corrupt"] == 1
    assert len(read_jsonl(jsonl)) == 5


def test_check_on_a_folder_of_mixed_images_skips_and_counts_the_unreadable_one(capsys, yolo_cpu_int8, tmp_path):
    folder = mixed_folder(tmp_path)
    out = tmp_path / "report.json"
    code = main(["check", str(yolo_cpu_int8.path), "--data", str(folder), "--json", str(out)])
    report = json.loads(out.read_text())
    assert code in (0, 1) and report["data"]["images"] == 5, report["data"]
    assert "1 unreadable files skipped" in report["data"]["description"]
    assert "f_broken.jpg" in capsys.readouterr().err


class FrameCountingStage:
    """A stateful stage: a real predictor plus state carried from frame to frame (how many frames it has seen,
    and the previous frame's detection count), as a tracker carries its memory bank."""

    stateful = True

    def __init__(self, predictor) -> None:
        self.predictor, self.labels = predictor, predictor.labels
        self.steps = 0
        self.previous: int | None = None
        self.history: list[tuple[int, int | None]] = []

    def step(self, frame_rgb):
        result = self.predictor.predict(frame_rgb)
        self.history.append((self.steps, self.previous))
        self.steps += 1
        self.previous = len(result)
        return result


def test_a_stateful_stage_sees_frames_in_order_and_realtime_drops_only_before_it(slow_bundle):
    """Capture outruns a slow stateful stage: frames are dropped in the capture stage, and every frame that
    reached the stage is emitted, in order, its state carried from the frame before."""
    script = {"reads": 0, "fail_at": set(), "refuse_opens": 0, "dead": False, "total": 10_000,
              "video": MovingShapesVideo(seed=5)}
    stage = FrameCountingStage(Predictor(slow_bundle))
    emitted = []
    pipe = Pipeline(flaky_source(script), stage, [], realtime=True, max_frames=40,
                    on_frame=lambda f: emitted.append(f.index))
    summary = pipe.run()
    assert summary["frames_dropped"] > 0 and summary["frames_read"] == 40
    assert len(emitted) == stage.steps == summary["frames_processed"]  # nothing dropped inside the stage
    assert emitted == sorted(emitted) and len(set(emitted)) == len(emitted)
    assert [prev is None for _, prev in stage.history] == [True] + [False] * (stage.steps - 1)


class BestBox:
    """The second stage of a chain: keeps the upstream detector's best box (where a segmenter would take it as
    its prompt), and counts the frames it saw."""

    labels = ("x",)

    def __init__(self) -> None:
        self.frames = 0

    def step(self, frame_rgb, upstream: Detections) -> Detections:
        self.frames += 1
        if not len(upstream):
            return upstream
        i = int(np.argmax(upstream.scores))
        return Detections(upstream.boxes[i : i + 1], upstream.scores[i : i + 1], upstream.class_ids[i : i + 1])


def test_a_chain_feeds_the_detector_into_the_next_stage_on_the_same_frame(yolo_cpu_int8, clip):
    from edgevision.pipeline.core import Chain

    path, _ = clip
    detector, best = Predictor(yolo_cpu_int8), BestBox()
    results = []
    pipe = Pipeline(open_source(str(path)), Chain(detector, best), [], on_frame=lambda f: results.append(f))
    assert pipe.run()["frames_processed"] == 40 == best.frames
    direct = Predictor(yolo_cpu_int8)
    for frame in results[:5]:
        assert len(frame.result) <= 1
    # the chain's output for a frame is the detector's best box on that same frame
    cap = cv2.VideoCapture(str(path))
    ok, bgr = cap.read()
    expected = direct.predict(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    assert np.allclose(results[0].result.boxes, expected.boxes[[int(np.argmax(expected.scores))]])


def test_videos_are_h264_which_browsers_play(yolo_cpu_int8, clip, tmp_path):
    """PyPI's OpenCV writes MPEG-4 Part 2 ('FMP4'), which browsers do not play; the sink writes H.264 through
    the ffmpeg of imageio-ffmpeg (installed with the export extra)."""
    out = tmp_path / "out.mp4"
    sink = VideoFileSink(out, 15.0)
    Pipeline(open_source(str(clip[0])), Predictor(yolo_cpu_int8), [sink]).run(handle_signals=False)
    assert sink.codec == "h264"
    cap = cv2.VideoCapture(str(out))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode(errors="replace").lower()
    assert fourcc in ("avc1", "h264"), fourcc
    assert frame_count(out) == 40


def test_ctrl_c_ends_a_run_with_exit_130_and_says_what_was_kept(yolo_cpu_int8, tmp_path):
    proc, err, out, jsonl = run_then_signal(yolo_cpu_int8, tmp_path, signal.SIGINT)
    assert proc.returncode == 130, err
    assert f"interrupted; kept {out}" in err and str(jsonl) in err
    assert "nothing was written" not in err  # said once, by the verb, not contradicted by the entry point
    assert 0 < frame_count(out) == len(read_jsonl(jsonl)) < 900  # what was kept is whole
