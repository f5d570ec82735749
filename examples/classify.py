"""A small embedded app: classify the images in a folder (or camera frames) with a mait-deploy bundle.

Needs only numpy, Pillow, mait-deploy's device install and the bundle's runtime: no torch.

    python classify.py BUNDLE --folder photos/ [--threads 2] [--log results.jsonl]
    python classify.py BUNDLE --camera 0 [--frames 100]     # needs OpenCV (pip install opencv-python-headless)

At start-up it runs the bundle's golden check (`verify`) and refuses to classify if this device disagrees with
the outputs recorded when the bundle was built.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mait_deploy.device.bundle import load_bundle, verify_bundle
from mait_deploy.device.preprocess import IMAGE_SUFFIXES
from mait_deploy.device.runner import RunnerOptions
from mait_deploy.errors import MaitDeployError


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def classify_folder(runner, folder: Path, log) -> int:
    paths = images_in(folder)
    if not paths:
        raise MaitDeployError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    for path in paths:
        started = time.perf_counter()
        result = runner.predict(str(path))
        total_ms = (time.perf_counter() - started) * 1000
        record = {"image": str(path), "label": result.labels[0], "score": round(float(result.scores[0]), 4),
                  "inference_ms": round(result.inference_ms, 3), "total_ms": round(total_ms, 3)}
        print(f"{path.name}: {record['label']} ({record['score']:.2f}) {record['inference_ms']:.2f} ms")
        if log:
            log.write(json.dumps(record) + "\n")
    return len(paths)


def classify_camera(runner, index: int, frames: int, log) -> int:
    try:
        import cv2
    except ImportError:
        raise MaitDeployError("camera mode needs OpenCV: pip install opencv-python-headless") from None
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise MaitDeployError(f"cannot open camera {index}")
    count = 0
    try:
        while count < frames:
            ok, frame = capture.read()
            if not ok:
                break
            result = runner.predict(frame[:, :, ::-1].copy())  # OpenCV gives BGR
            record = {"frame": count, "label": result.labels[0], "score": round(float(result.scores[0]), 4),
                      "inference_ms": round(result.inference_ms, 3)}
            print(f"frame {count}: {record['label']} ({record['score']:.2f}) {record['inference_ms']:.2f} ms")
            if log:
                log.write(json.dumps(record) + "\n")
            count += 1
    finally:
        capture.release()
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", type=Path)
    source.add_argument("--camera", type=int)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--log", type=Path, help="append one JSON line per image")
    args = parser.parse_args(argv)
    try:
        check = verify_bundle(args.bundle, RunnerOptions(threads=args.threads))
        print(f"verified {args.bundle} on this device ({check.target} {check.precision}, max |diff| "
              f"{check.max_abs_diff:.2g})")
        log = open(args.log, "a", encoding="utf-8") if args.log else None
        try:
            with load_bundle(args.bundle, RunnerOptions(threads=args.threads)) as runner:
                if args.folder:
                    count = classify_folder(runner, args.folder, log)
                else:
                    count = classify_camera(runner, args.camera, args.frames, log)
        finally:
            if log:
                log.close()
    except MaitDeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"classified {count} image(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
