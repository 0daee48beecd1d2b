"""A request body -> the 28x28 input a model sees, through the same `prepare_image` as `digitlab predict`.

Three ways in: JSON `{"pixels": 28x28 numbers}`, a multipart form with the image in the field `file`, or the
image bytes as the body itself (Content-Type image/png, image/jpeg, image/webp). Everything happens in memory:
no upload is ever spooled to disk. Each refusal is an `ApiError` carrying its HTTP status and a message.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import chain
from typing import Annotated

import anyio
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..data.images import BlankImageError, ImageError, prepare_image

IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "application/octet-stream"}
MAX_PIXELS = 16_000_000  # a server decodes less than `digitlab predict` (40 Mpx): a 16 Mpx decode takes ~0.5 GB


class ApiError(Exception):
    """A refusal with its HTTP status, a short machine-readable code and a message for people."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail

    def __reduce__(self):  # raised in a decoding process, it crosses back pickled: all three fields, not `args`
        return ApiError, (self.status, self.code, self.detail)


Pixel = Annotated[float, Field(ge=0, le=255, allow_inf_nan=False)]
Row = Annotated[list[Pixel], Field(min_length=28, max_length=28)]


class PixelsIn(BaseModel):
    """A 28x28 grey image as rows of numbers: all in [0, 1], or 0..255 when any value is above 1."""
    model_config = ConfigDict(extra="forbid", strict=True)
    pixels: Annotated[list[Row], Field(min_length=28, max_length=28)]


def pixels_input(body: bytes, prepare=prepare_image) -> torch.Tensor:
    """JSON {"pixels": [[...28] x 28]} -> prepared (28, 28); 400 on broken JSON, 422 on the wrong shape or type."""
    try:
        pixels = PixelsIn.model_validate_json(body).pixels
    except ValidationError as e:
        errors = e.errors(include_url=False, include_context=False, include_input=False)
        if any(err["type"] == "json_invalid" for err in errors):
            raise ApiError(400, "malformed_json", f"the body is not valid JSON ({errors[0]['msg']}).") from None
        where = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ApiError(422, "invalid_pixels", f'expected {{"pixels": 28 rows of 28 numbers in [0, 1] or 0..255}}; '
                                              f"{where}{more}.") from None
    return prepare_or_refuse(np.fromiter(chain.from_iterable(pixels), np.float32, 28 * 28).reshape(28, 28), prepare)


def sniff(data: bytes) -> str | None:
    """The PIL format name of a PNG, JPEG or WebP file from its first bytes; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def image_input(data: bytes, max_pixels: int = MAX_PIXELS, prepare=prepare_image) -> torch.Tensor:
    """Image file bytes -> prepared (28, 28); 415 when not PNG/JPEG/WebP, 400 when corrupt or too many pixels."""
    fmt = sniff(data)
    if fmt is None:
        what = "an empty body" if not data else f"a file starting with {data[:8]!r}"
        raise ApiError(415, "unsupported_image", f"got {what}: send a PNG, JPEG or WebP image.")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:  # reads the header only
            width, height = im.size
    except Image.DecompressionBombError:  # PIL's own guard, at twice its MAX_IMAGE_PIXELS, fires before ours
        width, height = max_pixels + 1, 1
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ApiError(400, "bad_image", f"this {fmt} file is corrupt ({e}).") from None
    if width * height > max_pixels:
        raise ApiError(400, "image_too_large", f"the {fmt} image has {width * height} pixels or more, "
                                               f"over this server's limit of {max_pixels}; scale it down first "
                                               f"(a digit needs no more than a few hundred pixels a side).")
    return prepare_or_refuse(data, prepare)


def image_array(data: bytes, max_pixels: int, prepare) -> np.ndarray:
    """`image_input` in a decoding process: the prepared (28, 28) as numpy, which pickles faster than a tensor."""
    return image_input(data, max_pixels, prepare).numpy()


def exit_with_parent(parent: int) -> None:
    """A decoder worker's initializer: end this process once the server that started it is gone. A spawned
    worker holds both ends of its call queue's pipe, so a server that dies (SIGKILL, out of memory) never sends it
    an end-of-file: without this it would wait forever, holding ~170 MB (found leaking after killed servers)."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


class Decoders:
    """Image files decoded and prepared off the event loop: in `workers` processes of their own, or with workers=0
    in threads of this one, at most two at a time (each decode may hold up to ~0.5 GB while it runs).

    Processes, because preparing the page's 280x280 PNG holds the GIL for about half of its ~2 ms (numpy on small
    arrays): in threads it contended with the event loop and the model's thread, and the server used 1.4 of its 2
    cores at ~300 requests/s. Each worker imports digitlab (~2 s and ~200 MB at start-up, in `start`). A worker
    that dies (killed for memory) fails the requests it held with a 500, and the pool is started afresh."""

    def __init__(self, prepare, max_pixels: int = MAX_PIXELS, workers: int = 2):
        self.prepare, self.max_pixels, self.workers = prepare, max_pixels, workers  # prepare: picklable by name
        self.pool: ProcessPoolExecutor | None = None
        self.threads = anyio.CapacityLimiter(2)

    def start(self) -> None:
        """Start the workers and have each prepare one image, so the first requests do not wait for imports."""
        if self.workers:
            self.pool = self.new_pool()
            blank = io.BytesIO()
            Image.new("L", (28, 28)).save(blank, "PNG")
            for job in [self.pool.submit(image_array, blank.getvalue(), self.max_pixels, self.prepare)
                        for _ in range(self.workers)]:
                try:
                    job.result()
                except ApiError:  # no digit: as expected
                    pass

    async def __call__(self, data: bytes) -> torch.Tensor:
        """The prepared (28, 28) for an image file's bytes; ApiError when it is refused."""
        if self.pool is None:
            async with self.threads:
                return await anyio.to_thread.run_sync(image_input, data, self.max_pixels, self.prepare)
        pool = self.pool
        try:
            return torch.from_numpy(await asyncio.wrap_future(pool.submit(image_array, data, self.max_pixels,
                                                                          self.prepare)))
        except BrokenProcessPool:
            if self.pool is pool:  # the first request to see it starts a new pool; the others just fail
                self.pool = self.new_pool()
            raise

    def new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=exit_with_parent, initargs=(os.getpid(),))

    def close(self) -> None:
        """Stop the workers and wait for them to exit (a shutdown that does not wait can leave them behind)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def prepare_or_refuse(source, prepare=prepare_image) -> torch.Tensor:
    """`prepare(source)` (the model's own preparation: `Classifier.prepare`); 422 when it holds no digit, 400 when
    it is not a readable image."""
    try:
        x = prepare(source)
    except BlankImageError as e:
        raise ApiError(422, "no_digit", str(e)) from None
    except ImageError as e:
        raise ApiError(400, "bad_image", str(e)) from None
    return x


def multipart_file(body: bytes, content_type: str) -> bytes:
    """The bytes of the form field `file` (or the only file) of a multipart/form-data body, parsed in memory."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_multipart", "multipart/form-data without a boundary.")
    parts: list[dict] = []
    field = bytearray()
    value = bytearray()

    def on_part_begin():
        parts.append({"headers": {}, "data": bytearray()})

    def on_header_end():
        parts[-1]["headers"][bytes(field).lower()] = bytes(value)
        field.clear()
        value.clear()

    callbacks = {"on_part_begin": on_part_begin, "on_header_end": on_header_end,
                 "on_header_field": lambda d, s, e: field.extend(d[s:e]),
                 "on_header_value": lambda d, s, e: value.extend(d[s:e]),
                 "on_part_data": lambda d, s, e: parts[-1]["data"].extend(d[s:e])}
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except Exception as e:  # python-multipart raises its own errors for a malformed form
        raise ApiError(400, "bad_multipart", f"the multipart form is malformed ({e}).") from None
    files = []
    for part in parts:
        _, disp = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if disp.get(b"name") == b"file":
            return bytes(part["data"])
        if b"filename" in disp:
            files.append(part)
    if len(files) == 1:
        return bytes(files[0]["data"])
    raise ApiError(422, "missing_file", 'the form has no image: send it as the file field "file" '
                                        "(curl -F file=@digit.png).")

