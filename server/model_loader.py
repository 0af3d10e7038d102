"""Building the shared models from the settings, with errors a user can act on.

The settings decide the profile (protocol §1): without an online model the
offline pipeline is built; with one, the 2pass recogniser (which also needs a VAD).
Each directory is identified from its files (:mod:`models.model_kind`), so any
recogniser FunASR's guides deploy can be given as ``--model-dir`` (Paraformer,
with timestamps, contextual, SeACo, 8 kHz, SenseVoiceSmall), and a directory
given to the wrong flag is refused with the flag it belongs to.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Dict, Optional, Tuple, Type, Union

from funasr_wss.models.itn import ChineseItn
from funasr_wss.models.live_stream import LiveRecognizer
from funasr_wss.models.model_dir import ModelDirError
from funasr_wss.models.model_kind import DetectedModel, ModelKind, Role, describe_role, detect_model, role_of
from funasr_wss.models.offline_pipeline import OfflinePipeline
from funasr_wss.models.onnx_session import DeviceUnavailableError, RuntimeOptions
from funasr_wss.models.paraformer import OfflineParaformer
from funasr_wss.models.paraformer_online import OnlineParaformer
from funasr_wss.models.punctuation import Punctuator, RealtimePunctuator, open_punctuator
from funasr_wss.models.sensevoice import SenseVoiceSmall
from funasr_wss.models.vad import FsmnVadModel
from funasr_wss.models.wfst_config import WfstConfig

from .model_dirs import ITN_FILES, resolve_model_dir
from .settings import DEFAULT_LM_REVISION, ServerSettings

MIB = 1 << 20

log = logging.getLogger(__name__)


def _local_dir(spec: str, settings: ServerSettings, revision: Optional[str], flag: Optional[str] = None,
               required: Tuple[str, ...] = (), revision_is_default: bool = False) -> Path:
    """A local directory for ``spec``: as given, or downloaded into ``--download-model-dir``."""
    download_dir = Path(settings.download_model_dir).expanduser() if settings.download_model_dir else None
    return resolve_model_dir(spec, download_dir, revision, required=required, flag=flag,
                             revision_is_default=revision_is_default)


#: The option that names each role's directory.
ROLE_FLAGS: Dict[Role, str] = {
    Role.OFFLINE: "--model-dir",
    Role.ONLINE: "--online-model-dir",
    Role.VAD: "--vad-dir",
    Role.PUNC: "--punc-dir",
}


def check_role(detected: DetectedModel, flag: str) -> DetectedModel:
    """Refuse a directory given to the wrong flag, naming the flag it belongs to."""
    wanted = next(role for role, role_flag in ROLE_FLAGS.items() if role_flag == flag)
    right = role_of(detected.kind)
    if right is wanted:
        return detected
    hint = f"; pass it as {ROLE_FLAGS[right]}" if right is not None else ""
    raise ModelDirError(f"{flag} {detected.model_dir} is {detected.description}, not {describe_role(wanted)}{hint}")


def _resolve(spec: str, settings: ServerSettings, revision: Optional[str], flag: str) -> DetectedModel:
    """Find (or download) the directory given to ``flag`` and check it holds a model that flag takes."""
    return check_role(detect_model(_local_dir(spec, settings, revision, flag)), flag)


def _open(flag: str, found: DetectedModel, factory, *args, **kwargs):
    """Open one model; any failure becomes a start-up error naming the flag and the directory.

    A directory can pass detection and still be unusable (a truncated download, a
    config whose settings contradict each other, an ONNX file from an older export).
    """
    try:
        return factory(found.model_dir, *args, **kwargs)
    except (ModelDirError, DeviceUnavailableError):
        raise
    except Exception as exc:
        raise ModelDirError(
            f"{flag} {found.model_dir} ({found.description}) cannot be opened: {type(exc).__name__}: {exc}"
        ) from exc


def open_recognizer(found: DetectedModel, settings: ServerSettings):
    """The offline recogniser class for the kind of model found."""
    factory = SenseVoiceSmall if found.kind is ModelKind.SENSEVOICE else OfflineParaformer
    return _open("--model-dir", found, factory, quantized=settings.quantize, options=_runtime(settings),
                 batch_size=settings.batch_size)


def _runtime(settings: ServerSettings) -> RuntimeOptions:
    return RuntimeOptions(device=settings.device, intra_op_threads=settings.model_thread_num)


# ------------------------------------------------------------------ the n-gram LM (--lm-dir)

#: The English Paraformer, which the reference never decodes with the (Chinese) LM, by its id.
ENGLISH_MODEL_ID = "speech_paraformer-large_asr_nat-en-16k-common-vocab10020"
#: The file an LM directory cannot do without (models.ngram_lm.TLG_FILE; not imported until an LM is used).
TLG_FILE = "TLG.fst"
#: Recognisers that decode through the LM: every offline Paraformer (contextual and SeACo too).
LM_KINDS = (ModelKind.PARAFORMER, ModelKind.PARAFORMER_TIMESTAMP, ModelKind.CONTEXTUAL, ModelKind.SEACO)


def _lm_skip_reason(settings: ServerSettings, found: DetectedModel) -> Optional[str]:
    """Why this recogniser gets no LM (as in the reference), or None when it takes one."""
    if found.kind is ModelKind.SENSEVOICE:
        return "SenseVoiceSmall does not decode through an n-gram LM"
    if _is_english(found) or ENGLISH_MODEL_ID in str(settings.model_dir):
        return "the English model does not decode through the (Chinese) n-gram LM"
    if found.kind not in LM_KINDS:
        return f"{found.description} does not decode through an n-gram LM"
    return None


def _lm_unavailable(settings: ServerSettings, error: Exception) -> None:
    """The default LM cannot be used: say so once and start without it; a named one stops the start."""
    why = str(error).rstrip(".")
    if settings.lm_dir_is_default:
        log.warning("--lm-dir %s (the default) cannot be used: %s; starting without an n-gram LM; "
                    "pass --lm-dir DIR or --lm-dir none", settings.lm_dir, why)
        return
    raise ModelDirError(f"--lm-dir {settings.lm_dir}: {why}; to start without an n-gram LM, pass --lm-dir none")


def _resolve_lm(settings: ServerSettings, asr_found: DetectedModel) -> Optional[Path]:
    """The LM directory to decode with, found (or downloaded) before any model is opened; None: greedy."""
    if not settings.lm_dir:
        return None
    why = _lm_skip_reason(settings, asr_found)
    if why is not None:
        log.info("--lm-dir %s is not used: %s", settings.lm_dir, why)
        return None
    try:
        # an earlier download is reused offline unless another revision than the reference's is asked for
        return _local_dir(settings.lm_dir, settings, settings.lm_revision, "--lm-dir", required=(TLG_FILE,),
                          revision_is_default=settings.lm_revision == DEFAULT_LM_REVISION)
    except ModelDirError as exc:
        _lm_unavailable(settings, exc)
        return None


_WFST_FLAGS = {"beam": "--global-beam", "lattice_beam": "--lattice-beam", "am_scale": "--am-scale",
               "fst_inc_wts": "--fst-inc-wts"}


def wfst_config(settings: ServerSettings):
    """The search settings (``--global-beam`` ...); a bad value stops the start, naming the flag."""
    try:
        return WfstConfig(beam=settings.global_beam, lattice_beam=settings.lattice_beam, am_scale=settings.am_scale,
                          fst_inc_wts=settings.fst_inc_wts)
    except ValueError as exc:
        flag = _WFST_FLAGS.get(str(exc).split(" ", 1)[0], "the WFST search settings")
        raise ModelDirError(f"{flag}: {exc}") from None


def _attach_lm(asr, lm_dir: Path, settings: ServerSettings) -> None:
    """Load the graph once and hand it to the offline recogniser (shared by every connection and thread)."""
    try:
        from funasr_wss.models.ngram_lm import load_lm_dir
        from funasr_wss.models.wfst_decoder import WfstDecoder
    except ImportError as exc:  # numba is what the search needs beyond the core dependencies
        _lm_unavailable(settings, ModelDirError(f"WFST decoding cannot be loaded ({exc}; pip install numba)"))
        return
    config = wfst_config(settings)
    started = time.perf_counter()
    try:
        lm = load_lm_dir(lm_dir)
        states, arcs = lm.graph.num_states, lm.graph.num_arcs
        decoder = WfstDecoder(lm, asr.vocab.tokens, config)
        del lm  # the decoder keeps the graph in its searched form only
    except (ModelDirError, ValueError) as exc:
        _lm_unavailable(settings, exc)
        return
    asr.use_lm(decoder)
    log.info(
        "n-gram LM: %s: TLG.fst %d states, %d arcs, %.1f MiB on disk, %.1f MiB in memory (shared by every "
        "connection), loaded in %.2f s (global-beam %g, lattice-beam %g, am-scale %g, fst-inc-wts %d)",
        lm_dir, states, arcs, decoder.file_bytes / MIB, decoder.memory_bytes / MIB,
        time.perf_counter() - started, config.beam, config.lattice_beam, config.am_scale, config.fst_inc_wts,
    )


# ------------------------------------------------------------------ the ITN grammar (--itn-dir)


def _resolve_itn(settings: ServerSettings) -> Optional[Path]:
    """The ``--itn-dir`` directory with its two FSTs (an earlier download of ``thuduj12/fst_itn_zh`` is reused
    without the hub); None: the bundled grammar."""
    if not settings.itn_dir:
        return None
    try:
        return _local_dir(settings.itn_dir, settings, settings.itn_revision, "--itn-dir", required=ITN_FILES)
    except ModelDirError as exc:
        raise ModelDirError(
            f"--itn-dir {settings.itn_dir}: {str(exc).rstrip('.')}. Or leave --itn-dir out: the bundled Chinese "
            "grammar (WeTextProcessing's, from the wetext package) does the same job"
        ) from None


def _open_itn(itn_dir: Optional[Path]) -> ChineseItn:
    try:
        return ChineseItn(itn_dir)
    except Exception as exc:
        if itn_dir is None:
            raise
        raise ModelDirError(f"--itn-dir {itn_dir} cannot be opened: {type(exc).__name__}: {exc}") from exc


# ------------------------------------------------------------------ the profiles


def _open_offline_parts(settings: ServerSettings, punctuator_factory):
    """Resolve (and download) the offline ASR, VAD, punctuation, ITN and LM, then open them."""
    runtime = _runtime(settings)
    asr_found = _resolve(settings.model_dir, settings, settings.model_revision, "--model-dir")
    vad_found = _resolve(settings.vad_dir, settings, settings.vad_revision, "--vad-dir") if settings.vad_dir else None
    punc_found = _resolve(settings.punc_dir, settings, settings.punc_revision, "--punc-dir") if settings.punc_dir else None
    itn_dir = _resolve_itn(settings)
    lm_dir = _resolve_lm(settings, asr_found)

    asr = open_recognizer(asr_found, settings)
    if lm_dir is not None:
        _attach_lm(asr, lm_dir, settings)
    vad = _open("--vad-dir", vad_found, FsmnVadModel, quantized=settings.vad_quant, options=runtime) if vad_found else None
    punc = _open("--punc-dir", punc_found, punctuator_factory, quantized=settings.punc_quant, options=runtime) if punc_found else None
    itn = _open_itn(itn_dir)
    log.info("offline model: %s (%s)", asr.model_path, asr_found.description)
    if asr_found.sample_rate and vad is not None and asr_found.sample_rate != vad.sample_rate:
        log.info("the recogniser takes %d Hz audio, the VAD %d Hz: each hears the audio at its own rate",
                 asr_found.sample_rate, vad.sample_rate)
    lm = getattr(asr, "lm", None)
    log.info(
        "vad=%s, punc=%s (%s), itn=%s, lm=%s",
        vad_found.model_dir if vad_found else "none",
        punc_found.model_dir if punc_found else "none",
        punc_found.description if punc_found else "-",
        itn_dir or "the bundled grammar (wetext)",
        lm.directory if lm is not None else "none (greedy decoding)",
    )
    return asr, vad, punc, itn, asr_found


def load_offline_pipeline(settings: ServerSettings) -> OfflinePipeline:
    """The offline profile: VAD → Paraformer → CT-Transformer (offline export) → ITN per utterance."""
    started = time.perf_counter()
    asr, vad, punc, itn, found = _open_offline_parts(settings, Punctuator)
    log.info("models loaded in %.1f s", time.perf_counter() - started)
    return OfflinePipeline(asr=asr, vad=vad, punctuator=punc, itn=itn, english=_is_english(found))


def _is_english(found: DetectedModel) -> bool:
    """An English vocabulary (``lang: en-bpe``): punctuation marks then come out ASCII."""
    return found.language.lower().startswith("en")


def load_two_pass(settings: ServerSettings) -> LiveRecognizer:
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
    asr, vad, punc, itn, found = _open_offline_parts(settings, open_punctuator)
    online_found = _resolve(settings.online_model_dir, settings, settings.online_model_revision, "--online-model-dir")
    online = _open("--online-model-dir", online_found, OnlineParaformer, quantized=settings.quantize, options=_runtime(settings))
    realtime = punc if isinstance(punc, RealtimePunctuator) else None
    pipeline = OfflinePipeline(asr=asr, vad=vad, punctuator=None if realtime else punc, itn=itn, english=_is_english(found))
    log.info("online model: %s; models loaded in %.1f s", online.encoder_path, time.perf_counter() - started)
    return LiveRecognizer(pipeline, vad, online, realtime)


#: What load_models raises when the models cannot be had (a directory that is missing or incomplete, a
#: download that failed, a device that is not there): a message for the user, not a crash.
LOAD_ERRORS: Tuple[Type[Exception], ...] = (ModelDirError, DeviceUnavailableError)


def load_models(settings: ServerSettings) -> Union[OfflinePipeline, LiveRecognizer]:
    """The models of the profile the settings ask for."""
    return load_two_pass(settings) if settings.online_model_dir else load_offline_pipeline(settings)


__all__ = [
    "LOAD_ERRORS", "check_role", "load_models", "load_offline_pipeline", "load_two_pass", "DeviceUnavailableError", "ModelDirError",
]
