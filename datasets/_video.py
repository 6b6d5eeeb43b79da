"""Video decoding with PyAV: frames at a chosen rate and the frame size from the container's metadata."""

from __future__ import annotations

import os

import numpy as np


def read_video(
    path: str | os.PathLike, size: int | None = None, every_seconds: float = 0.0
) -> tuple[np.ndarray, float]:
    """Decode a video with PyAV: uint8 (N, H, W, 3) frames (resized to size x size if given) and the frame rate.

    ``every_seconds > 0`` keeps the first frame of every period, like the official CREMA-D extraction
    (``frame_interval = int(fps / 1)``, frame ``i`` kept when ``i % interval == 0``).
    """
    import av

    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 30)
        interval = max(int(fps * every_seconds), 1) if every_seconds > 0 else 1
        for i, frame in enumerate(container.decode(stream)):
            if i % interval:
                continue
            if size is not None:
                frame = frame.reformat(width=size, height=size)
            frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        raise ValueError("no decodable video frame")
    return np.stack(frames), fps


def video_frame_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of a video's frames, from the container's metadata."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return int(stream.width), int(stream.height)
