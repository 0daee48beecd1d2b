"""The web app: one page to draw a digit on, and the JSON API behind it.

GET /             the page (HTML, JS and CSS held in memory, read once at start-up)
POST /api/predict an image (multipart field `file`, or the raw body) or JSON {"pixels": 28x28} -> label, probabilities
GET /api/model    what the model is: architecture, training data, test accuracy, when trained, classes
GET /api/health   liveness, with counters
GET /docs, /openapi.json  the framework's OpenAPI description

Every error is JSON {"error": code, "detail": message} with a fitting status; see docs/serve.md.
"""

from __future__ import annotations

import gc
import time
from contextlib import asynccontextmanager
from functools import partial
from importlib import metadata, resources
from pathlib import Path

import numpy as np
import orjson
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from ..card import model_card
from ..data import preparation
from ..errors import DigitlabError
from ..predict import Classifier, verdict_fields
from .batcher import Batcher
from .inputs import IMAGE_TYPES, MAX_PIXELS, ApiError, Decoders, PixelsIn, multipart_file, pixels_input
from .limits import BodyLimit, error_body

MAX_BODY = 1 << 20  # 1 MiB
STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "prepare.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
PAGE_HEADERS = {"content-security-policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                                           "base-uri 'none'; frame-ancestors 'none'",
                "x-content-type-options": "nosniff", "cache-control": "no-cache"}
# an exported page (digitlab export --format web) compiles ONNX Runtime Web's WebAssembly: CSP must allow that
EXPORTED_PAGE_HEADERS = {**PAGE_HEADERS, "content-security-policy": PAGE_HEADERS["content-security-policy"].replace(
    "default-src 'self';", "default-src 'self'; script-src 'self' 'wasm-unsafe-eval';")}


class PredictionOut(BaseModel):
    label: int | str                       # the predicted class: a digit (MNIST), or a name ("Sneaker")
    probabilities: dict[str, float]        # class -> probability, summing to 1
    none_of_the_classes: bool              # the model's detector says the image is none of its classes
    verdict: str                           # what to say: the label, or "not a digit" / "not one of these classes"
    not_a_digit: bool | None = None        # the same flag, for a model of digits only (the older name)
    ood_score: float | None                # the detector's score (larger: less like the training images; null
                                           # for a model without a detector)
    input: list[list[int]]                 # the 28x28 input the model saw, grey levels 0..255 (white ink on black)


class ErrorOut(BaseModel):
    error: str                             # a short code: body_too_large, unsupported_image, no_digit, ...
    detail: str                            # what was wrong and what to do


def static_files() -> dict[str, bytes]:
    """The page's files (STATIC) from the package, read once."""
    folder = resources.files(__package__) / "static"
    return {name: (folder / name).read_bytes() for name in STATIC}


def error_response(status: int, code: str, detail: str, headers: dict | None = None) -> Response:
    """FastAPI's answer for a refusal: the one {error, detail} body (limits.error_body)."""
    return Response(error_body(code, detail), status_code=status, headers=headers, media_type="application/json")


PREDICT_BODY = {"required": True, "content": {
    "application/json": {"schema": PixelsIn.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    **{t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(IMAGE_TYPES)}}}
ERRORS = {400: {"model": ErrorOut, "description": "corrupt image, image with too many pixels, malformed JSON"},
          413: {"model": ErrorOut, "description": "body over the size limit"},
          415: {"model": ErrorOut, "description": "not a PNG, JPEG or WebP image, or an unknown content type"},
          422: {"model": ErrorOut, "description": "JSON of the wrong shape or type (invalid_pixels), or no digit "
                                                  "in the image (no_digit)"}}


def create_app(model_file: str | Path, max_body: int = MAX_BODY, max_pixels: int = MAX_PIXELS,
               decode_workers: int = 2, page_folder: str | Path | None = None) -> "BodyLimit":
    """The ASGI app serving the model in `model_file` (a .safetensors written by digitlab): the body limit, then
    POST /api/predict answered directly (`PredictRoute`), then FastAPI for everything else. `page_folder`: a page
    exported by `digitlab export --format web`, served at / instead of the built-in page (which asks this API)."""
    model_file = Path(model_file)
    clf = Classifier.load(model_file)
    clf.model.to(memory_format=torch.channels_last)  # same numbers, ~3x faster convs on CPU for batches
    info = model_card(clf, model_file)
    batcher = Batcher(clf)
    page = static_files()
    started = time.time()
    # image files are decoded and prepared off the event loop, in processes (see Decoders); `prepare` is what
    # clf.prepare does (the model's saved preparation), as a partial of a module function so that it pickles
    decoders = Decoders(partial(preparation.prepare, clf.preparation), max_pixels, decode_workers)

    @asynccontextmanager
    async def lifespan(app):
        batcher.warm_up()
        decoders.start()
        # the ~200k objects of start-up (torch, FastAPI, pydantic) move out of the collector's sight: a full
        # collection of them took up to 110 ms, stalling every request in flight (the p99 under load)
        gc.collect()
        gc.freeze()
        yield
        batcher.close()
        decoders.close()

    app = FastAPI(title="digitlab", version=metadata.version("digitlab"), lifespan=lifespan,
                  description="Draw a digit, get the model's guess. Errors are JSON {error, detail}.")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return error_response(e.status, e.code, e.detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return error_response(e.status_code, code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        return error_response(422, "invalid_request", str(e.errors()[:3]))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception):
        return error_response(500, "internal", f"the server failed on this request ({e.__class__.__name__}); "
                                               f"it keeps running.")

    if page_folder is None:
        @app.get("/", include_in_schema=False)
        async def index():
            return Response(page["index.html"], media_type=STATIC["index.html"], headers=PAGE_HEADERS)

        @app.get("/static/{name}", include_in_schema=False)
        async def static(name: str):
            if name not in STATIC:
                raise ApiError(404, "not_found", f"no static file {name!r}.")
            return Response(page[name], media_type=STATIC[name], headers=PAGE_HEADERS)

    @app.get("/api/health", tags=["service"])
    async def health():
        """Liveness: ok, the model's name, uptime and how many predictions and batches have run."""
        return {"status": "ok", "model": info["architecture"], "uptime_s": round(time.time() - started, 1),
                "predictions": batcher.items, "batches": batcher.batches}

    @app.get("/api/model", tags=["model"])
    async def model():
        """The model card: architecture, training data, test accuracy, when trained, classes."""
        return info

    @app.post("/api/predict", tags=["model"], response_model=PredictionOut, responses=ERRORS,
              openapi_extra={"requestBody": PREDICT_BODY})
    async def predict(request: Request):
        """Predict the digit in an image file (multipart field `file`, or the raw body as image/png, image/jpeg,
        image/webp) or in JSON {"pixels": 28 rows of 28 numbers}, prepared as `digitlab predict` prepares it."""
        # documents the route; PredictRoute answers it before FastAPI sees the request
        return Response(await answer(request.headers.get("content-type", ""), await request.body()),
                        media_type="application/json")

    async def answer(content_type: str, body: bytes) -> bytes:
        """The JSON prediction for one request body; raises ApiError when the body is refused."""
        kind = content_type.split(";")[0].strip().lower()
        if kind == "application/json":
            x = pixels_input(body, clf.prepare)
        elif kind == "multipart/form-data":
            data = multipart_file(body, content_type)
            x = await decoders(data)
        elif kind in IMAGE_TYPES:
            x = await decoders(body)
        else:
            raise ApiError(415, "unsupported_media_type", f"Content-Type {kind or '(none)'!r} is not one this API "
                                                          f"takes: use application/json, multipart/form-data or "
                                                          f"image/png, image/jpeg, image/webp.")
        probs, score = await batcher.predict(x)
        return prediction_json(clf.classes, probs, x, score, clf.detector, clf.digits)

    if page_folder is not None:  # last: the API's routes, matched first, stay as they are
        app.mount("/", ExportedPage(page_folder), name="page")
    return BodyLimit(PredictRoute(app, answer), max_body=max_body)


class ExportedPage(StaticFiles):
    """The files of a page exported by `digitlab export --format web`, with the page's security headers."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        if not (folder / "index.html").is_file() or not (folder / "model" / "model.json").is_file():
            raise DigitlabError(f"{folder}: not a page made by `digitlab export --format web` (no index.html and "
                                f"model/model.json); export one first.")
        super().__init__(directory=folder, html=True)

    async def get_response(self, path: str, scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(EXPORTED_PAGE_HEADERS)
        return response


class PredictRoute:
    """POST /api/predict as plain ASGI, in front of FastAPI, whose middleware, routing, dependency solving and
    Request cost ~0.1-0.2 ms a request (about a tenth of the event loop's time under load). Other requests, and
    the OpenAPI description of this one, go to `app`."""

    def __init__(self, app, answer):
        self.app, self.answer = app, answer

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/api/predict" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        content_type = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"), "")
        status = 200
        try:
            body = await self.answer(content_type, b"".join(chunks))
        except ApiError as e:
            status, body = e.status, error_body(e.code, e.detail)
        except Exception as e:  # as FastAPI's handler above: the request fails, the server lives
            status, body = 500, error_body("internal", f"the server failed on this request "
                                                       f"({e.__class__.__name__}); it keeps running.")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def prediction_json(classes: list, probs: torch.Tensor, x: torch.Tensor, score: float | None = None,
                    detector=None, digits: bool = True) -> bytes:
    """The JSON answer: label, probability per class, whether it is none of the classes in the model's words
    (predict.verdict_fields, with the detector's score), and the 28x28 input as grey levels 0..255."""
    p = probs.tolist()
    flagged = detector is not None and score is not None and detector.flags(score)
    label = classes[max(range(len(p)), key=p.__getitem__)]
    grey = np.rint(x.numpy() * 255).astype(np.uint8)  # numpy, not torch: no dispatch cost on the event loop
    # orjson writes the uint8 array itself: 4 us, where json.dumps of 784 Python ints took 65 us
    return orjson.dumps({"label": label, "probabilities": {str(c): round(v, 6) for c, v in zip(classes, p)},
                         **verdict_fields(label, flagged, digits),
                         "ood_score": None if score is None else round(score, 6),
                         "input": grey}, option=orjson.OPT_SERIALIZE_NUMPY)
