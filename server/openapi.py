"""The HTTP API described as OpenAPI 3.1, served at ``GET /openapi.json``.

Written by hand from what :mod:`server.http_api` and :mod:`server.transcription`
accept (the field names and values are taken from those modules, so the two
cannot drift apart on them), for API browsers and client generators.
"""
from __future__ import annotations

from typing import Any, Dict

from .protocol import SVS_LANGUAGES
from .transcription import GRANULARITIES, RESPONSE_FORMATS

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
MODELS_PATH = "/v1/models"
OPENAPI_PATH = "/openapi.json"


def _error(description: str) -> Dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_document(version: str = "0") -> Dict[str, Any]:
    """The document; ``version`` is the server's package version."""
    form_fields: Dict[str, Any] = {
        "file": {"type": "string", "format": "binary",
                 "description": "the audio: any container the server decodes (wav, mp3, flac, ogg, m4a, ...), or raw "
                                "16-bit little-endian mono PCM (a .pcm name, Content-Type audio/L16;rate=N, or "
                                "wav_format=pcm with audio_fs)"},
        "model": {"type": "string", "description": "accepted for compatibility; the loaded model is used (see /v1/models)"},
        "language": {"type": "string", "description": "SenseVoiceSmall's svs_lang: " + ", ".join(SVS_LANGUAGES)
                                                      + "; other models ignore it"},
        "prompt": {"type": "string", "description": "hotwords: a JSON object of word → weight, or words separated by "
                                                    "spaces or commas (the WebSocket 'hotwords' field)"},
        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "json"},
        "timestamp_granularities[]": {"type": "array", "items": {"type": "string", "enum": list(GRANULARITIES)},
                                      "description": "verbose_json: segment (default) and/or word"},
        "stream": {"type": "boolean", "default": False,
                   "description": "server-sent events: transcript.text.delta per segment, then transcript.text.done"},
        "temperature": {"type": "number", "description": "accepted, no effect"},
        "itn": {"type": "boolean", "default": True, "description": "extension: inverse text normalisation"},
        "hotwords": {"type": "string", "description": "extension: as prompt (wins over it when both are given)"},
        "svs_lang": {"type": "string", "enum": list(SVS_LANGUAGES), "description": "extension: as language"},
        "svs_itn": {"type": "boolean", "default": True, "description": "extension: SenseVoiceSmall's punctuation and ITN"},
        "wav_format": {"type": "string", "description": "extension: 'pcm' for raw PCM"},
        "audio_fs": {"type": "integer", "description": "extension: the sample rate of raw PCM (default 16000)"},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "FunASR server: OpenAI-compatible transcription", "version": version,
                 "description": "The same models, limits and API key as the WebSocket protocol on this port."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "the server's --api-key, when it has one"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["message", "type"],
                    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
                "Transcription": {"type": "object", "required": ["text"], "properties": {
                    "text": {"type": "string"},
                    "usage": {"type": "object", "properties": {"type": {"const": "duration"}, "seconds": {"type": "number"}}},
                    "language": {"type": "string", "description": "SenseVoiceSmall only"},
                    "emotion": {"type": "string", "description": "SenseVoiceSmall only"},
                    "event": {"type": "string", "description": "SenseVoiceSmall only"},
                    "warning": {"type": "string", "description": "hotwords that were dropped, and why"}}},
                "TranscriptionVerbose": {"type": "object", "required": ["text", "duration", "language"], "properties": {
                    "task": {"const": "transcribe"}, "language": {"type": "string"}, "duration": {"type": "number"},
                    "text": {"type": "string"},
                    "segments": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "integer"}, "start": {"type": "number"}, "end": {"type": "number"},
                        "text": {"type": "string"}}}},
                    "words": {"type": "array", "items": {"type": "object", "properties": {
                        "word": {"type": "string"}, "start": {"type": "number"}, "end": {"type": "number"}}}},
                    "emotion": {"type": "string"}, "event": {"type": "string"}}},
            },
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            TRANSCRIPTIONS_PATH: {"post": {
                "summary": "Transcribe an audio file",
                "operationId": "createTranscription",
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["file"], "properties": form_fields}}}},
                "responses": {
                    "200": {"description": "the transcription in the response_format asked for", "content": {
                        "application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/Transcription"},
                                                                  {"$ref": "#/components/schemas/TranscriptionVerbose"}]}},
                        "text/plain": {"schema": {"type": "string"}},
                        "application/x-subrip": {"schema": {"type": "string"}},
                        "text/vtt": {"schema": {"type": "string"}},
                        "text/event-stream": {"schema": {"type": "string"}}}},
                    "400": _error("a missing, repeated or ill-typed field, an empty file, a malformed body"),
                    "401": _error("no API key, or the wrong one"),
                    "413": _error("the upload or its decoded audio is over the server's limits"),
                    "415": _error("not multipart/form-data, or audio the server cannot decode"),
                    "503": _error("the models are loading, the server is draining, or it is at its limits"),
                },
            }},
            MODELS_PATH: {"get": {
                "summary": "The loaded model", "operationId": "listModels",
                "responses": {"200": {"description": "an OpenAI model list", "content": {"application/json": {
                    "schema": {"type": "object"}}}}, "401": _error("no API key, or the wrong one"),
                    "503": _error("the models are still loading")}}},
            MODELS_PATH + "/{model}": {"get": {
                "summary": "One model", "operationId": "retrieveModel",
                "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the model", "content": {"application/json": {
                    "schema": {"type": "object"}}}}, "404": _error("no such model")}}},
            OPENAPI_PATH: {"get": {"summary": "This document", "operationId": "openapi", "security": [{}],
                                   "responses": {"200": {"description": "OpenAPI 3.1",
                                                         "content": {"application/json": {}}}}}},
        },
    }
