"""The OpenAPI 3.1 description of the HTTP API, served at /openapi.json: written out by hand
(it is small), with the server's limits filled in."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp", "image/tiff")


def _errors(*codes: int) -> dict[str, Any]:
    what = {400: "not an image (or video), or a malformed form", 404: "unknown model",
            413: "too many bytes, pixels or (video) frames", 422: "a bad direction, style, label, format or n",
            500: "the model failed on this input, or could not be loaded",
            503: "the model is still loading, or the queue is full (see Retry-After)"}
    return {str(code): {"description": what[code],
                        "content": {"application/json": {"schema": ERROR}}} for code in codes}


def _image_answer(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {kind: {"schema": {"type": "string", "format": "binary"}}
                        for kind in IMAGE_TYPES}}


def _field(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def schema(max_bytes: int, max_pixels: int, max_frames: int = 600) -> dict[str, Any]:
    try:
        own = version("img2img")
    except PackageNotFoundError:
        own = "unknown"
    formats = ["png", "jpeg", "webp", "bmp", "tiff"]
    translate_form = {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary",
                  "description": f"the image: at most {max_bytes} bytes and {max_pixels} pixels"},
        "model": _field("a name from /api/models (may be left out when one model is served)"),
        "direction": _field("one of the model's directions (default: its first)"),
        "style": _field("one of the model's styles, for runs trained with them (default: the "
                        "first)"),
        "format": _field("the result's format (default: the input's)", enum=formats),
        "seed": {"type": "integer", "description": "runs trained with a noise input (their "
                 "noise_dim > 0): which of their outputs; each seed gives its own (default: "
                 "none, zero noise, the output closest to what training fitted)"},
    }}
    video_form = {"type": "object", "required": ["video"], "properties": {
        "video": {"type": "string", "format": "binary",
                  "description": f"the clip (MP4, MOV, MKV, WebM, ...): at most {max_bytes} "
                                 f"bytes, {max_frames} frames and {max_pixels} pixels a frame"},
        "model": _field("a name from /api/models (may be left out when one model is served)"),
        "direction": _field("one of the model's directions (default: its first)"),
        "style": _field("one of the model's styles, for runs trained with them"),
        "stabilize": _field("'flow' blends each frame with the previous output along the "
                            "input's motion (less flicker)", enum=["none", "flow"],
                            default="none"),
    }}
    sample_form = {"type": "object", "properties": {
        "model": _field("a name from /api/models (may be left out when one model is served)"),
        "label": {"type": "array", "items": {"type": "string"},
                  "description": "class names or indices, repeatable; 'all' (the default) is "
                                 "every class, one row each"},
        "n": {"type": "integer", "minimum": 1, "maximum": 64, "default": 8,
              "description": "images per label"},
        "seed": {"type": "integer", "description": "the same seed draws the same images "
                                                   "(default: a fresh one, in X-Seed)"},
        "format": _field("the grid's format", enum=formats, default="png"),
    }}
    forms = ("multipart/form-data", "application/x-www-form-urlencoded")
    return {
        "openapi": "3.1.0",
        "info": {"title": "img2img serve", "version": own,
                 "description": "Translate images with trained img2img runs, or sample from "
                                "class-conditional ones. Errors are JSON {\"error\": message}."},
        "paths": {
            "/api/models": {"get": {
                "summary": "The served runs: name, family, preset, directions, styles or "
                           "classes, and whether each is loaded",
                "responses": {"200": {"description": "the served models and the limits",
                                      "content": {"application/json": {"schema": {
                                          "$ref": "#/components/schemas/Models"}}}}}}},
            "/api/translate": {"post": {
                "summary": "Translate one image as `img2img convert` would: same size, alpha "
                           "and bit depth kept where the format allows",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": translate_form}}},
                "responses": {"200": _image_answer("the translated image (header X-Model)"),
                              **_errors(400, 404, 413, 422, 500, 503)}}},
            "/api/translate-video": {"post": {
                "summary": "Translate a short clip as `img2img convert clip.mp4 -o out.mp4` "
                           "would: every frame, its timing and its audio kept; H.264 MP4",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": video_form}}},
                "responses": {"200": {"description": "the translated clip (header X-Model)",
                                      "content": {"video/mp4": {"schema": {
                                          "type": "string", "format": "binary"}}}},
                              **_errors(400, 404, 413, 422, 500, 503)}}},
            "/api/sample": {"post": {
                "summary": "A grid of images drawn for chosen classes, one row per class, by a "
                           "model that samples (cgan)",
                "requestBody": {"required": False, "content": {
                    kind: {"schema": sample_form} for kind in forms}},
                "responses": {"200": _image_answer("the grid (headers X-Model, X-Seed)"),
                              **_errors(400, 404, 422, 500, 503)}}},
            "/healthz": {"get": {
                "summary": "Readiness: 200 once the models are loaded, 503 while loading",
                "responses": {"200": {"description": "ready"},
                              "503": {"description": "still loading, or no model loaded"}}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}}},
            "Models": {"type": "object", "properties": {
                "models": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
                "loading": {"type": "boolean"},
                "limits": {"type": "object", "properties": {
                    "max_bytes": {"type": "integer"}, "max_pixels": {"type": "integer"},
                    "max_frames": {"type": "integer"}}}}},
            "Model": {"type": "object", "required": ["name", "status"], "properties": {
                "name": {"type": "string"},
                "status": {"type": "string", "enum": ["loading", "ready", "failed"]},
                "source": {"type": "string"}, "error": {"type": "string"},
                "family": {"type": "string"}, "preset": {"type": ["string", "null"]},
                "kind": {"type": "string", "enum": ["translate", "sample"]},
                "directions": {"type": "array", "items": {"type": "string"}},
                "styles": {"type": "array", "items": {"type": "string"}},
                "classes": {"type": "array", "items": {"type": "string"}},
                "channels": {"type": "integer"}, "training_size": {"type": "integer"},
                "checkpoint": {"type": "string"}, "runtime": {"type": "string"},
                "noise_dim": {"type": "integer"}}},
        }},
    }


__all__ = ["schema"]
