"""The native runner (mait_deploy/native) as a user gets it: `mait-deploy app` writes the project, CMake builds it
against the runtime's own SDK, CTest runs its self-test; then the same top-1 as the Python runner on 1,000 test
images, the same input tensor from the same file, and one clear line for every failure."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.native import sdk
from tests.shipped import edited_copy

pytest.importorskip("torch")

RUNTIMES = ("onnxruntime", "openvino", "executorch", "litert")
# The OpenVINO runner's C++ build takes ~1 minute more than ONNX Runtime's C one, ExecuTorch's INT8 bundle ~2
# minutes to quantize and lower, LiteRT's two bundles and build ~1 minute: in CI's slow run, not the default.
BUILT_RUNTIMES = ("onnxruntime", pytest.param("openvino", marks=pytest.mark.slow),
                  pytest.param("executorch", marks=pytest.mark.slow), pytest.param("litert", marks=pytest.mark.slow))
PRECISIONS = ("fp32", "int8")
AGREEMENT_IMAGES = 1000


class Built(dict):
    """key -> a built thing, built on first use: the default suite builds only what its tests ask for (the OpenVINO
    runner's build and its tests are marked slow; CI's slow run has them)."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, key):
        self[key] = self.make(key)
        return self[key]


@pytest.fixture(scope="module")
def bundles(shipped_bundles):
    """(runtime, precision) -> the shipped model's bundle of this mait-deploy (each native runtime, FP32/INT8), built
    once per session and shared with the boards' and the backends' tests."""
    return Built(lambda key: shipped_bundles[key].folder)


@pytest.fixture(scope="module")
def apps(bundles, tmp_path_factory):
    """runtime -> the build folder of the project `mait-deploy app` wrote for its FP32 bundle."""
    from mait_deploy.device.native_app import generate_app

    root = tmp_path_factory.mktemp("native-apps")

    def make(runtime):
        project = generate_app(bundles[runtime, "fp32"], root / runtime).folder
        return sdk.build(Path(project), Path(project) / "build")

    return Built(make)


def needs(runtime):
    reason = sdk.missing(runtime)
    if reason:
        pytest.skip(reason)


def run(tool: Path, *args, check: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True, timeout=600, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"{tool.name} {' '.join(map(str, args))}: {done.stderr}")
    return done


@pytest.mark.parametrize("runtime", BUILT_RUNTIMES)
def test_the_generated_project_builds_and_ctest_runs_its_golden_selftest(runtime, apps, bundles):
    needs(runtime)
    build = apps[runtime]
    done = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and "100% tests passed" in done.stdout, done.stdout + done.stderr
    # The same build runs the INT8 bundle of its runtime; the report names what ran.
    done = run(build / "mait-selftest", bundles[runtime, "int8"], check=True)
    assert "golden outputs match on this device: 8 images" in done.stdout
    assert done.stdout.startswith(f"{bundles[runtime, 'int8']}: {runtime} ")
    if runtime == "openvino":  # the manifest's precision, not the CPU plugin's bf16/f16 default
        assert "inference precision f32" in done.stdout


def test_the_bench_reports_its_own_latency_and_peak_memory_not_its_parents(apps, bundles):
    """mait-bench's one JSON line: percentiles, the runtime call inside them, and its own peak RSS even when the
    process that starts it holds more (ru_maxrss would say the parent's: Linux carries it across exec)."""
    needs("onnxruntime")
    held = np.ones(64 * 2**20)  # 512 MB of this process, every page touched
    done = run(apps["onnxruntime"] / "mait-bench", bundles["onnxruntime", "fp32"], "--batch", "2",
               "--iterations", "20", "--warmup", "2", check=True)
    del held
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["batch"] == 2 and report["iterations"] == 20
    assert 0 < report["runtime_call_p50_ms"] <= report["p50_ms"] <= report["p99_ms"]
    assert report["throughput"] == pytest.approx(2 / report["p50_ms"] * 1000)
    assert 0 < report["peak_rss_mb"] < 256, report  # the runner and ONNX Runtime with a 28-px model


@pytest.fixture(scope="module")
def test_images(tmp_path_factory):
    """1,000 Fashion-MNIST test images (the shipped sample) as PNG files, and their labels."""
    from mait_deploy.device.data.builtin import load_sample

    folder = tmp_path_factory.mktemp("native-images")
    sample = load_sample("test")
    for index in range(AGREEMENT_IMAGES):
        Image.fromarray(sample.images[index]).save(folder / f"{index:04d}.png")
    return folder, sample.labels[:AGREEMENT_IMAGES]


@pytest.mark.parametrize("runtime", BUILT_RUNTIMES)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_top1_equals_the_python_runner_on_1000_test_images(runtime, precision, apps, bundles, test_images):
    needs(runtime)
    from mait_deploy.device.bundle import load_bundle

    folder, labels = test_images
    bundle = bundles[runtime, precision]
    done = run(apps[runtime] / "mait-classify", bundle, folder, "--json", check=True)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    paths = sorted(folder.glob("*.png"))
    assert [row["image"] for row in rows] == [str(p) for p in paths]
    native = np.array([row["index"] for row in rows])
    native_logits = np.array([row["logits"] for row in rows], dtype=np.float32)
    with load_bundle(bundle) as runner:
        python = runner.predict([str(p) for p in paths])
    assert np.array_equal(native, python.indices)  # every image, not a share
    assert float(np.abs(native_logits - python.logits).max()) <= 1e-4
    assert (native == labels).mean() > 0.85


PREPROCESS_CONFIGS = [
    {"input_size": 28, "channels": 1, "mean": [0.286], "std": [0.353], "interpolation": "bilinear", "crop_pct": 1.0},
    *({"input_size": 24, "channels": channels, "mean": [0.5] * channels, "std": [0.25] * channels,
       "interpolation": interpolation, "crop_pct": 0.875}
      for interpolation in ("nearest", "bilinear", "bicubic") for channels in (1, 3)),
]


def odd_images(folder: Path) -> list[Path]:
    """Real images (Fashion-MNIST) and odd ones: every mode Pillow reads differently, sizes up and down, JPEG."""
    from mait_deploy.device.data.builtin import load_sample

    images = load_sample("test").images
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    grey_alpha = np.stack([images[3], rng.integers(0, 256, (28, 28), dtype=np.uint8)], -1)
    palette = Image.fromarray(rgb).quantize(16)
    made = {
        "fmnist_28.png": Image.fromarray(images[0]),
        "grey_57x41.png": Image.fromarray(images[1]).resize((57, 41), Image.BICUBIC),
        "grey_9x13.png": Image.fromarray(images[2]).resize((9, 13)),
        "grey_252x336.png": Image.fromarray(np.kron(images[5], np.ones((12, 9), dtype=np.uint8))),
        "rgb_53x37.png": Image.fromarray(rgb), "rgb_53x37.bmp": Image.fromarray(rgb),
        "rgba_30x40.png": Image.fromarray(rng.integers(0, 256, (40, 30, 4), dtype=np.uint8), "RGBA"),
        "grey_alpha_31x33.png": Image.fromarray(grey_alpha, "LA").resize((31, 33)),
        "palette_53x37.png": palette, "grey16_35x29.png": Image.fromarray(
            rng.integers(0, 65536, (29, 35)).astype(np.uint16)),
        "bilevel_28.png": Image.fromarray(images[4] > 128),
        "photo_200x120.jpg": Image.fromarray(images[6]).resize((200, 120), Image.BILINEAR).convert("RGB"),
        "grey_64.jpg": Image.fromarray(images[7]).resize((64, 64)),
        "rgb_53x37.jpg": Image.fromarray(rgb),
    }
    paths = []
    for name, image in made.items():
        image.save(folder / name, quality=80) if name.endswith(".jpg") else image.save(folder / name)
        paths.append(folder / name)
    palette.save(folder / "palette_transparent_53x37.png", transparency=3)
    return [*paths, folder / "palette_transparent_53x37.png"]


def test_preprocessing_gives_the_python_tensor_exactly_on_real_and_odd_images(apps, tmp_path):
    runtime = next((r for r in RUNTIMES if sdk.missing(r) is None), None)
    if runtime is None:
        pytest.skip(sdk.missing("onnxruntime") or sdk.missing("openvino"))
    from mait_deploy.config import PreprocessConfig
    from mait_deploy.device.preprocess import preprocess

    tool = apps[runtime] / "mait-preprocess"
    images = odd_images(tmp_path)
    compared = 0
    for number, values in enumerate(PREPROCESS_CONFIGS):
        settings = tmp_path / f"preprocess{number}.json"
        settings.write_text(json.dumps(values))
        config = PreprocessConfig.from_dict(values)
        for image in images:
            expected = preprocess(str(image), config)[0]
            run(tool, settings, image, tmp_path / "tensor.f32", check=True)
            native = np.fromfile(tmp_path / "tensor.f32", dtype="<f4").reshape(expected.shape)
            assert np.array_equal(native, expected), (values, image.name, float(np.abs(native - expected).max()))
            compared += 1
    assert compared == len(PREPROCESS_CONFIGS) * len(images) == 7 * 15


def hostile_cases(source: Path, root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a broken copy of the bundle, the message the runner must give)."""
    from tests.shipped import shift_golden_logits

    cases = {}

    def copy(name, change=None):
        return edited_copy(source, root / name, change)

    artifact = json.loads((source / "manifest.json").read_text())["artifact"]["path"]
    tampered = copy("tampered")
    data = bytearray((tampered / artifact).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tampered / artifact).write_bytes(bytes(data))
    cases["tampered"] = (tampered, f"{artifact} does not match its sha256 in the manifest")
    truncated = copy("truncated")
    (truncated / artifact).write_bytes((truncated / artifact).read_bytes()[:100])
    cases["truncated"] = (truncated, f"{artifact} is 100 bytes; the manifest says")
    cases["newer schema"] = (copy("schema4", lambda d: d.update(schema_version=4)),
                             "uses schema version 4; this runner reads up to 3")
    cases["count is text"] = (copy("count", lambda d: d["golden"].update(count="eight")), "golden.count:")
    cases["unknown field"] = (copy("unknown", lambda d: d.update(extra=1)), "(top level):")
    cases["escaping path"] = (copy("escape", lambda d: d["golden"].update(file="../golden.bin")),
                              "escapes the bundle folder")
    cases["classes disagree"] = (copy("classes", lambda d: d["model"].update(num_classes=5)),
                                 "outputs[0] has 10 classes, model.num_classes is 5")
    golden = copy("golden")
    shift_golden_logits(golden, 0.75)
    cases["golden disagrees"] = (golden, "golden outputs do not match on this device")
    cases["another runtime"] = (copy("runtime", lambda d: d["runtime"].update(  # options are the runtime's own
        name="openvino" if d["runtime"]["name"] == "onnxruntime" else "onnxruntime", options={})),
        "this runner was built for")
    not_json = copy("not-json")
    (not_json / "manifest.json").write_text('{"schema_version": 3, "model": ')
    cases["not JSON"] = (not_json, "is not valid JSON")
    deep = copy("deep")
    (deep / "manifest.json").write_text('{"schema_version": 3, "x": ' + "[" * 100000 + "]" * 100000 + "}")
    cases["deep nesting"] = (deep, "is nested deeper than 32 levels")
    huge = copy("huge")
    (huge / "manifest.json").write_text(" " * (2 << 20))
    cases["huge manifest"] = (huge, "the limit is 1048576")
    return cases


def assert_one_line_failure(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr


@pytest.mark.parametrize("runtime", BUILT_RUNTIMES)
def test_every_failure_is_one_line_and_exit_1(runtime, apps, bundles, tmp_path):
    needs(runtime)
    build = apps[runtime]
    for bundle, message in hostile_cases(bundles[runtime, "fp32"], tmp_path).values():
        assert_one_line_failure(run(build / "mait-selftest", bundle), message)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    for image, message in (("bad.png", "cannot read image"), ("absent.png", "image not found")):
        done = run(build / "mait-classify", bundles[runtime, "fp32"], tmp_path / image, "--no-verify")
        assert_one_line_failure(done, message)
    done = run(build / "mait-classify", bundles[runtime, "fp32"])
    assert done.returncode == 2 and done.stderr.startswith("usage error: mait-classify BUNDLE")


def test_app_refuses_what_it_cannot_build_and_replaces_only_its_own_projects(bundles, tmp_path):
    runtime = next((r for r in RUNTIMES if sdk.missing(r) is None), None)
    if runtime is None:
        pytest.skip(sdk.missing("onnxruntime"))
    source = bundles[runtime, "fp32"]
    from mait_deploy.device.native_app import generate_app
    from mait_deploy.errors import BundleError, MaitDeployError, UnsupportedOption

    # TensorRT is the one runtime without a native backend: the reason and what to do instead, in one line.
    tensorrt = tmp_path / "tensorrt"
    shutil.copytree(source, tensorrt)
    data = json.loads((tensorrt / "manifest.json").read_text())
    data["runtime"] = {"name": "tensorrt", "options": {}}
    (tensorrt / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(UnsupportedOption, match="no native app for tensorrt bundles: the native runner has no TensorRT"):
        generate_app(tensorrt, tmp_path / "out")
    from mait_deploy.device.native_app import native_runtimes

    assert set(native_runtimes()) == {"onnxruntime", "openvino", "executorch", "litert"}
    tampered = tmp_path / "tampered"
    shutil.copytree(source, tampered)
    (tampered / "golden.bin").write_bytes(b"0" * (tampered / "golden.bin").stat().st_size)
    with pytest.raises(BundleError, match="golden.bin does not match its sha256"):
        generate_app(tampered, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    project = Path(generate_app(source, tmp_path / "out").folder)
    assert sorted(p.name for p in (project / "bundle").iterdir()) == sorted(
        p.name for p in source.iterdir())
    with pytest.raises(MaitDeployError, match="exists; pass --force"):
        generate_app(source, project)
    generate_app(source, project, force=True)
    (tmp_path / "mine").mkdir()
    with pytest.raises(MaitDeployError, match="not mait-deploy's own native app"):
        generate_app(source, tmp_path / "mine", force=True)
    # Two `app`s into one new folder at once: one wins, the other fails in one line (never a silent replace).
    import concurrent.futures

    def attempt(_):
        try:
            return generate_app(source, tmp_path / "raced").folder
        except MaitDeployError as err:
            return err

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(attempt, range(2)))
    assert sum(isinstance(o, str) for o in outcomes) == 1, outcomes
    assert any(isinstance(o, MaitDeployError) and ("exists" in str(o) or "appeared" in str(o)) for o in outcomes)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_runner_is_clean_under_address_and_undefined_behaviour_sanitizers(runtime, bundles, tmp_path):
    needs(runtime)
    from mait_deploy.device.native_app import generate_app

    project = Path(generate_app(bundles[runtime, "fp32"], tmp_path / "app").folder)
    build = sdk.build(project, project / "build-asan", "-DMAIT_SANITIZE=ON", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                      targets=("mait-selftest", "mait-classify"))  # what ctest and the checks below run
    # Leaks the runtime's teardown makes are suppressed (build/lsan.supp: a plug-in's native/lsan.supp names them), and
    # oneTBB (OpenVINO's threads) dlopens its NUMA helper with RTLD_DEEPBIND, which ASan refuses, unless told so.
    env = {**os.environ, "LSAN_OPTIONS": f"suppressions={build / 'lsan.supp'}", "TBB_ENABLE_SANITIZERS": "1"}
    done = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    for precision in PRECISIONS:
        done = run(build / "mait-selftest", bundles[runtime, precision], env=env)
        assert done.returncode == 0 and "Sanitizer" not in done.stderr and "runtime error" not in done.stderr, \
            done.stderr[-3000:]
    for bundle, message in hostile_cases(bundles[runtime, "fp32"], tmp_path / "hostile").values():
        assert_one_line_failure(run(build / "mait-selftest", bundle, env=env), message)
    (tmp_path / "inputs").mkdir()
    check_hostile_input(build, bundles[runtime, "fp32"], tmp_path / "inputs", env)


@pytest.mark.slow
def test_a_program_executorch_refuses_is_its_reason_on_one_line(apps, bundles, tmp_path):
    """A .pte cut short whose manifest matches it (so the hashes pass): ExecuTorch's own reason, one line, exit 1,
    none of its log lines on stderr."""
    import hashlib

    needs("executorch")
    bundle = tmp_path / "cut"
    shutil.copytree(bundles["executorch", "fp32"], bundle)
    program = (bundle / "model.pte").read_bytes()[:200_000]
    (bundle / "model.pte").write_bytes(program)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["artifact"].update(sha256=hashlib.sha256(program).hexdigest(), bytes=len(program))
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_failure(run(apps["executorch"] / "mait-selftest", bundle),
                            "executorch refuses model.pte (Error::InvalidProgram")
    # Bytes flipped inside the program (the Python runtime aborts on such): the verifier refuses them, one line.
    import random

    flipped = bytearray((bundles["executorch", "fp32"] / "model.pte").read_bytes())
    rng = random.Random(0)
    for _ in range(256):
        flipped[rng.randrange(len(flipped) // 8)] ^= rng.randrange(1, 256)
    (bundle / "model.pte").write_bytes(bytes(flipped))
    manifest["artifact"].update(sha256=hashlib.sha256(flipped).hexdigest(), bytes=len(flipped))
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    done = run(apps["executorch"] / "mait-selftest", bundle)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow
def test_executorch_bundles_run_torch_free_through_the_native_library(apps, bundles, tmp_path):
    """The Python device side on a device without torch (nor ExecuTorch's Python runtime): verify, evaluate,
    predict and profile an ExecuTorch bundle through the native runner's C ABI (libmait_runner_c.so, ctypes)."""
    import sys
    import textwrap

    from tests.helpers import BLOCKER

    needs("executorch")
    library = apps["executorch"] / "libmait_runner_c.so"
    code = BLOCKER.replace('"safetensors"}', '"safetensors", "executorch"}') + textwrap.dedent(f'''
        import json, sys
        from mait_deploy.device.bundle import load_bundle, verify_bundle
        from mait_deploy.device.accuracy import evaluate_bundle
        from mait_deploy.device.profiling.measure import ProfileOptions, profile
        rows = {{}}
        for precision, bundle in (("fp32", {str(bundles["executorch", "fp32"])!r}),
                                  ("int8", {str(bundles["executorch", "int8"])!r})):
            report = verify_bundle(bundle)
            with load_bundle(bundle) as runner:
                info = runner.runtime_info()
            accuracy = evaluate_bundle(bundle, count=200)
            timing = profile(bundle, ProfileOptions(batches=(1,), warmup=1, iterations=5))
            rows[precision] = {{"passed": report.passed, "via": info["via"], "top1": accuracy.top1,
                                "error": timing.error}}
        assert "torch" not in sys.modules
        print(json.dumps(rows))
    ''')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MAIT_NATIVE_LIBRARY": str(library)})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    for precision, row in rows.items():
        assert row["passed"] and row["via"] == "native library" and row["error"] is None, (precision, row)
        assert row["top1"] > 0.85, (precision, row)
    # The library built for another runtime is refused in one line, and so is a missing one.
    from mait_deploy.device.bundle import load_bundle
    from mait_deploy.device.runner import RunnerOptions
    from mait_deploy.errors import BundleError

    with pytest.raises(BundleError, match="native runner library .* does not exist"):
        load_bundle(bundles["executorch", "fp32"], RunnerOptions(native_library=str(tmp_path))).activate()
    if "onnxruntime" in [r for r in RUNTIMES if sdk.missing(r) is None]:
        other = apps["onnxruntime"] / "libmait_runner_c.so"
        with pytest.raises(BundleError, match="was built for onnxruntime"):
            load_bundle(bundles["executorch", "fp32"], RunnerOptions(native_library=str(other))).activate()


def test_the_stream_app_classifies_ffmpeg_frames_from_a_pipe_as_the_same_frames_as_files(apps, bundles, tmp_path):
    """300 frames of FFmpeg's test source as rawvideo on a pipe into mait-stream: a label per frame and the
    sustained frames per second; each label equals mait-classify's on that frame written as a (lossless) PNG."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    needs("onnxruntime")
    build, bundle = apps["onnxruntime"], bundles["onnxruntime", "fp32"]
    source = ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=30", "-frames:v", "300"]
    producer = subprocess.Popen([*source, "-pix_fmt", "rgb24", "-f", "rawvideo", "-"], stdout=subprocess.PIPE)
    done = subprocess.run([str(build / "mait-stream"), str(bundle), "--width", "96", "--height", "64", "--json"],
                          stdin=producer.stdout, capture_output=True, text=True, timeout=600)
    producer.stdout.close()
    assert producer.wait(timeout=60) == 0 and done.returncode == 0, done.stderr
    streamed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["frame"] for row in streamed] == list(range(300))
    assert re.fullmatch(r"300 frames in [0-9.]+ s: [0-9.]+ frames/s sustained \(runtime [0-9.]+ ms per frame\)\n",
                        done.stderr), done.stderr
    frames = tmp_path / "frames"
    frames.mkdir()
    subprocess.run([*source, str(frames / "%03d.png")], check=True, timeout=300)
    classified = run(build / "mait-classify", bundle, frames, "--json", "--no-verify", check=True)
    files = [json.loads(line) for line in classified.stdout.splitlines()]
    assert len(files) == 300
    assert [row["label"] for row in streamed] == [row["label"] for row in files]
    # A stream cut inside a frame, and a wrong frame size, are one line.
    cut = subprocess.run([str(build / "mait-stream"), str(bundle), "--width", "96", "--height", "64"],
                         input=b"\0" * (96 * 64 * 3 + 10), capture_output=True, timeout=120)
    assert cut.returncode == 1 and cut.stderr.decode().startswith("error: the stream ended inside frame 1")
    huge = run(build / "mait-stream", bundle, "--width", "65535", "--height", "65535")
    assert_one_line_failure(huge, "frame is over 40 MP")


def test_the_sdk_installs_into_a_prefix_and_an_out_of_tree_app_builds_against_it(apps, bundles, tmp_path):
    """`cmake --install` of a runner build into an empty prefix: a versioned shared library (SONAME), the public
    headers, the CMake package and mait.pc; examples/cpp_sdk (only `find_package(mait CONFIG REQUIRED)`) builds
    against it and checks a bundle; pkg-config gives working flags; the library exports the public API only."""
    needs("onnxruntime")
    build, bundle = apps["onnxruntime"], bundles["onnxruntime", "fp32"]
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", str(build), "--prefix", str(prefix)], check=True, capture_output=True)
    library = prefix / "lib" / "libmait_runner.so"
    assert library.is_symlink() and (prefix / "include" / "mait" / "mait.hpp").is_file()
    assert (prefix / "lib" / "cmake" / "mait" / "maitConfig.cmake").is_file()
    dynamic = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    assert "Library soname: [libmait_runner.so.0]" in dynamic
    exported = subprocess.run(["nm", "-DC", "--defined-only", str(library)], capture_output=True, text=True,
                              check=True).stdout.splitlines()
    names = [line.split(" ", 2)[2] for line in exported]
    outside = [n for n in names if not (n.startswith(("mait::", "mait_")) or " for mait::" in n)]
    assert not outside, outside[:10]
    assert "mait::Runner::open(std::filesystem::__cxx11::path const&, mait::RunnerOptions const&)" in names
    assert not any(n.startswith("mait::read_text") or "Backend::" in n for n in names)  # internal stays hidden
    example = Path(__file__).resolve().parents[2] / "examples" / "cpp_sdk"
    out = sdk.build(example, tmp_path / "example", f"-DCMAKE_PREFIX_PATH={prefix}")
    done = run(out / "mait-sdk-example", bundle, check=True)
    assert "golden outputs match on this device" in done.stdout
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "mait"], capture_output=True, text=True, check=True,
                           env={**os.environ, "PKG_CONFIG_PATH": str(prefix / "lib" / "pkgconfig")}).stdout.split()
    compiled = tmp_path / "pkg-config-example"
    subprocess.run(["c++", str(example / "main.cpp"), *flags, f"-Wl,-rpath,{prefix / 'lib'}", "-o", str(compiled)],
                   check=True, capture_output=True, timeout=300)
    assert "golden outputs match" in run(compiled, bundle, check=True).stdout


@pytest.mark.parametrize("runtime", BUILT_RUNTIMES)
def test_a_shared_runner_gives_every_call_its_own_answer(runtime, apps, bundles):
    """One Runner shared by threads (mait-threads: 4 workers, 120 calls on 8 distinct inputs, each answer checked
    against the same input run alone), and one C ABI handle shared by Python threads through ctypes."""
    import concurrent.futures

    from mait_deploy.device.native_library import open_native

    needs(runtime)
    done = run(apps[runtime] / "mait-threads", bundles[runtime, "fp32"], "--workers", 4, "--calls", 120, check=True)
    assert json.loads(done.stdout)["wrong"] == 0
    manifest = json.loads((bundles[runtime, "fp32"] / "manifest.json").read_text())
    session = open_native(apps[runtime] / "libmait_runner_c.so", bundles[runtime, "fp32"], runtime,
                          manifest["model"]["num_classes"], 1)
    try:
        inputs = np.random.default_rng(0).standard_normal((8, 1, *session.sample_shape)).astype(np.float32)
        alone = [session.run(batch)[0] for batch in inputs]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda call: (call % 8, session.run(inputs[call % 8])[0]), range(120)))
        assert all(np.allclose(logits, alone[which], atol=1e-4) for which, logits in answers)
    finally:
        session.close()


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_shared_runner_is_clean_under_thread_sanitizer(runtime, bundles, tmp_path):
    """mait-threads built with TSan (only that target): every answer its own, no race reported. The runtimes'
    libraries are not instrumented: races with a frame inside them are suppressed (build/tsan.supp: the shared
    cmake/tsan.supp and a plug-in's own, native/cmake/tsan.supp says why)."""
    needs(runtime)
    from mait_deploy.device.native_app import generate_app

    project = Path(generate_app(bundles[runtime, "fp32"], tmp_path / "app").folder)
    build = sdk.build(project, project / "build-tsan", "-DMAIT_SANITIZE_THREAD=ON", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                      targets=("mait-threads",))
    env = {**os.environ, "TSAN_OPTIONS": f"suppressions={build / 'tsan.supp'}",
           "TBB_ENABLE_SANITIZERS": "1"}
    done = run(build / "mait-threads", bundles[runtime, "fp32"], "--workers", 4, "--calls", 60, env=env)
    assert done.returncode == 0 and "ThreadSanitizer" not in done.stderr, done.stderr[-3000:]
    assert json.loads(done.stdout)["wrong"] == 0


def test_hostile_input_to_the_native_runner_is_one_line_and_bounded(apps, bundles, tmp_path):
    """Images that would take gigabytes or never end, thread counts that would hang or wrap, names that would forge
    lines or break JSON, options a manifest may not carry, and signed bundles, through the native apps."""
    runtime = next((r for r in RUNTIMES if sdk.missing(r) is None), None)
    if runtime is None:
        pytest.skip(sdk.missing("onnxruntime"))
    check_hostile_input(apps[runtime], bundles[runtime, "fp32"], tmp_path)


def check_hostile_input(build: Path, bundle: Path, tmp_path: Path, env: dict | None = None) -> None:
    """The hostile-input checks of the native apps in ``build`` (also run under the sanitizers)."""
    classify, selftest = build / "mait-classify", build / "mait-selftest"
    Image.fromarray(np.full((16_000_000, 1), 128, np.uint8)).save(tmp_path / "tall.png", optimize=True)
    os.mkfifo(tmp_path / "fifo.png")
    assert_one_line_failure(run(classify, bundle, tmp_path / "tall.png", "--no-verify", env=env),
                            "tall.png: a 1x16000000 image resizes to 28x448000000 before the centre crop")
    assert_one_line_failure(run(classify, bundle, tmp_path / "fifo.png", "--no-verify", env=env),
                            "is not a regular file")
    for threads in ("100000", "4294967297", "-1"):
        done = run(classify, bundle, tmp_path / "tall.png", "--threads", threads, env=env)
        assert done.returncode == 2 and "--threads needs an integer from 1 to 256" in done.stderr, done.stderr
    names = tmp_path / "names"
    names.mkdir()
    plain = Image.fromarray(np.full((28, 28), 100, np.uint8))
    plain.save(names / "a\nerror: forged.png")
    plain.save(os.fsdecode(b"%s/bad\xff.png" % os.fsencode(names)))
    done = run(classify, bundle, names, "--no-verify", check=True, env=env)
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == ["a\\x0aerror", "bad\\xff.png"]
    done = subprocess.run([str(classify), str(bundle), str(names), "--no-verify", "--json"], capture_output=True,
                          timeout=300, env=env)
    rows = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [Path(row["image"]).name for row in rows] == ["a\\x0aerror: forged.png", "bad\\xff.png"]

    def edited(name, change):
        return edited_copy(bundle, tmp_path / name, change)

    assert_one_line_failure(run(selftest, edited("library", lambda d: d["runtime"]["options"].update(
        native_library="/tmp/evil.so")), env=env), "runtime")
    assert_one_line_failure(run(selftest, edited("label", lambda d: d["model"]["labels"].__setitem__(
        0, "T-shirt\nerror: forged")), env=env), "labels")

    # Signed bundles: the same envelope the Python side writes, checked with OpenSSL.
    pytest.importorskip("cryptography")
    from mait_deploy.device.signing import generate_keys, sign_bundle

    key, trusted = generate_keys(tmp_path / "builder")
    _, other = generate_keys(tmp_path / "other")
    signed = tmp_path / "signed"
    shutil.copytree(bundle, signed)
    sign_bundle(signed, key)
    assert run(selftest, signed, "--trust", trusted, env=env).returncode == 0
    assert run(selftest, signed, env={**(env or os.environ), "MAIT_TRUSTED_KEY": str(trusted)}).returncode == 0
    assert_one_line_failure(run(selftest, signed, "--trust", other, env=env),
                            "is not a valid signature by the trusted key")
    assert_one_line_failure(run(selftest, bundle, "--trust", trusted, env=env), "is not signed")
    assert_one_line_failure(run(selftest, signed, "--trust", key, env=env), "is not an Ed25519 public key in PEM")
    changed = tmp_path / "changed"
    shutil.copytree(signed, changed)
    (changed / "manifest.json").write_bytes((changed / "manifest.json").read_bytes().replace(b'"fp32"', b'"fp16"', 1))
    assert_one_line_failure(run(selftest, changed, "--trust", trusted, env=env),
                            "differs from the manifest its signature")
    tampered = tmp_path / "tampered"
    shutil.copytree(signed, tampered)
    golden = bytearray((tampered / "golden.bin").read_bytes())
    golden[-1] ^= 1
    (tampered / "golden.bin").write_bytes(bytes(golden))
    assert_one_line_failure(run(selftest, tampered, "--trust", trusted, env=env), "golden.bin does not match its sha256")
