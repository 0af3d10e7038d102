"""Building the shared models from the settings, with errors a user can act on."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from models.itn import ChineseItn
from models.model_dir import ModelDirError, resolve_model_dir
from models.offline_pipeline import OfflinePipeline
from models.onnx_session import RuntimeOptions
from models.paraformer import OfflineParaformer
from models.punctuation import Punctuator
from models.vad import FsmnVadModel

from .settings import ServerSettings

log = logging.getLogger(__name__)


def _download_dir(settings: ServerSettings) -> Optional[Path]:
    return Path(settings.download_model_dir).expanduser() if settings.download_model_dir else None


def _resolve(spec: str, settings: ServerSettings, revision: Optional[str], required=()) -> Path:
    return resolve_model_dir(spec, _download_dir(settings), revision, required)


def load_offline_pipeline(settings: ServerSettings) -> OfflinePipeline:
    """Resolve (and download) every model directory, then open the sessions."""
    started = time.perf_counter()
    runtime = RuntimeOptions(device=settings.device, intra_op_threads=settings.model_thread_num)
    asr_dir = _resolve(settings.model_dir, settings, settings.model_revision, ("config.yaml", "tokens.json", "am.mvn"))
    vad_dir = _resolve(settings.vad_dir, settings, settings.vad_revision, ("config.yaml", "am.mvn")) if settings.vad_dir else None
    punc_dir = _resolve(settings.punc_dir, settings, settings.punc_revision, ("config.yaml", "tokens.json")) if settings.punc_dir else None
    itn_dir = _resolve(settings.itn_dir, settings, settings.itn_revision) if settings.itn_dir else None

    asr = OfflineParaformer(asr_dir, quantized=settings.quantize, options=runtime, batch_size=settings.batch_size)
    vad = FsmnVadModel(vad_dir, quantized=settings.vad_quant, options=runtime) if vad_dir else None
    punc = Punctuator(punc_dir, quantized=settings.punc_quant, options=runtime) if punc_dir else None
    itn = ChineseItn(itn_dir)
    log.info(
        "models loaded in %.1f s: asr=%s (%s), vad=%s, punc=%s, itn=%s",
        time.perf_counter() - started,
        asr.model_path,
        "timestamps" if asr.has_timestamps else "no timestamps",
        vad_dir,
        punc_dir,
        itn_dir or "WeTextProcessing bundled grammar",
    )
    return OfflinePipeline(asr=asr, vad=vad, punctuator=punc, itn=itn)


__all__ = ["load_offline_pipeline", "ModelDirError"]
