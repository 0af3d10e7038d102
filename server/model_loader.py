"""Building the shared models from the settings, with errors a user can act on.

The settings decide the profile (protocol §1): without an online model the
offline pipeline is built; with one, the 2pass recogniser (which also needs a VAD).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional, Union

from models.itn import ChineseItn
from models.model_dir import ModelDirError, resolve_model_dir
from models.offline_pipeline import OfflinePipeline
from models.onnx_session import RuntimeOptions
from models.paraformer import OfflineParaformer
from models.paraformer_online import OnlineParaformer
from models.punctuation import Punctuator, RealtimePunctuator, open_punctuator
from models.two_pass import TwoPassRecognizer
from models.vad import FsmnVadModel

from .settings import ServerSettings

log = logging.getLogger(__name__)

ASR_FILES = ("config.yaml", "tokens.json", "am.mvn")


def _resolve(spec: str, settings: ServerSettings, revision: Optional[str], required=()) -> Path:
    download_dir = Path(settings.download_model_dir).expanduser() if settings.download_model_dir else None
    return resolve_model_dir(spec, download_dir, revision, required)


def _runtime(settings: ServerSettings) -> RuntimeOptions:
    return RuntimeOptions(device=settings.device, intra_op_threads=settings.model_thread_num)


def _open_offline_parts(settings: ServerSettings, punctuator_factory):
    """Resolve (and download) the offline ASR, VAD, punctuation and ITN, then open them."""
    runtime = _runtime(settings)
    asr_dir = _resolve(settings.model_dir, settings, settings.model_revision, ASR_FILES)
    vad_dir = _resolve(settings.vad_dir, settings, settings.vad_revision, ("config.yaml", "am.mvn")) if settings.vad_dir else None
    punc_dir = _resolve(settings.punc_dir, settings, settings.punc_revision, ("config.yaml", "tokens.json")) if settings.punc_dir else None
    itn_dir = _resolve(settings.itn_dir, settings, settings.itn_revision) if settings.itn_dir else None

    asr = OfflineParaformer(asr_dir, quantized=settings.quantize, options=runtime, batch_size=settings.batch_size)
    vad = FsmnVadModel(vad_dir, quantized=settings.vad_quant, options=runtime) if vad_dir else None
    punc = punctuator_factory(punc_dir, quantized=settings.punc_quant, options=runtime) if punc_dir else None
    itn = ChineseItn(itn_dir)
    log.info(
        "offline models: asr=%s (%s), vad=%s, punc=%s (%s), itn=%s",
        asr.model_path,
        "timestamps" if asr.has_timestamps else "no timestamps",
        vad_dir,
        punc_dir,
        type(punc).__name__ if punc else "none",
        itn_dir or "WeTextProcessing bundled grammar",
    )
    return asr, vad, punc, itn


def load_offline_pipeline(settings: ServerSettings) -> OfflinePipeline:
    """The offline profile: VAD → Paraformer → CT-Transformer (offline export) → ITN per utterance."""
    started = time.perf_counter()
    asr, vad, punc, itn = _open_offline_parts(settings, Punctuator)
    log.info("models loaded in %.1f s", time.perf_counter() - started)
    return OfflinePipeline(asr=asr, vad=vad, punctuator=punc, itn=itn)


def load_two_pass(settings: ServerSettings) -> TwoPassRecognizer:
    """The 2pass profile: streaming VAD, online Paraformer, offline Paraformer per segment.

    Punctuation is the realtime CT-Transformer export (its cache carries an
    open sentence into the next segment); an offline export also works,
    punctuating each segment on its own.
    """
    if not settings.online_model_dir:
        raise ModelDirError("the 2pass profile needs an online model (--online-model-dir)")
    if not settings.vad_dir:
        raise ModelDirError("the 2pass profile needs a VAD model (--vad-dir): its segments drive both passes")
    started = time.perf_counter()
    asr, vad, punc, itn = _open_offline_parts(settings, open_punctuator)
    online_dir = _resolve(settings.online_model_dir, settings, settings.online_model_revision, ASR_FILES)
    online = OnlineParaformer(online_dir, quantized=settings.quantize, options=_runtime(settings))
    realtime = punc if isinstance(punc, RealtimePunctuator) else None
    pipeline = OfflinePipeline(asr=asr, vad=vad, punctuator=None if realtime else punc, itn=itn)
    log.info("online model: %s; models loaded in %.1f s", online.encoder_path, time.perf_counter() - started)
    return TwoPassRecognizer(pipeline, vad, online, realtime)


def load_models(settings: ServerSettings) -> Union[OfflinePipeline, TwoPassRecognizer]:
    """The models of the profile the settings ask for."""
    return load_two_pass(settings) if settings.online_model_dir else load_offline_pipeline(settings)


__all__ = ["load_models", "load_offline_pipeline", "load_two_pass", "ModelDirError"]
