"""Where the test fixtures live (copied from the project's shared fixture set; see fixtures/README.md)."""
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MODELS = FIXTURES / "models"
AUDIO = FIXTURES / "audio"
GOLDEN = Path(__file__).resolve().parent / "golden"

VAD_DIR = MODELS / "speech_fsmn_vad_zh-cn-16k-common-onnx"
ASR_TIMESTAMP_DIR = MODELS / "speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-onnx"
ASR_PLAIN_DIR = MODELS / "speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-onnx"
ASR_ONLINE_DIR = MODELS / "speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online-onnx"
PUNC_DIR = MODELS / "punc_ct-transformer_zh-cn-common-vocab272727-onnx"
PUNC_REALTIME_DIR = MODELS / "punc_ct-transformer_zh-cn-common-vad_realtime-vocab272727-onnx"
PUNC_LARGE_DIR = MODELS / "punc_ct-transformer_cn-en-common-vocab471067-large-onnx"
ASR_CONTEXTUAL_DIR = MODELS / "speech_paraformer-large-contextual_asr_nat-zh-cn-16k-common-vocab8404-onnx"
ASR_SEACO_DIR = MODELS / "speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-onnx"
ASR_8K_DIR = MODELS / "speech_paraformer_asr_nat-zh-cn-8k-common-vocab8358-tensorflow1-onnx"
SENSEVOICE_DIR = MODELS / "SenseVoiceSmall-onnx"
#: The n-gram LM (--lm-dir) built on the fixture Paraformer's 128-token vocabulary.
LM_DIR = MODELS / "speech_ngram_lm_zh-cn-ai-wesp-fst"
#: FunASR's own C++ WFST decoder on the fixture clips with LM_DIR (see golden/lm/README.md).
LM_GOLDEN = GOLDEN / "lm" / "golden.json"


def audio_clips():
    """Every fixture clip (wav, mp3, flac), sorted by name."""
    return sorted(p for p in AUDIO.iterdir() if p.suffix in {".wav", ".mp3", ".flac"})


#: Files every fixture model directory must have; checked before any test runs.
REQUIRED_MODEL_FILES = {
    VAD_DIR.name: ("model.onnx", "model_quant.onnx", "config.yaml", "am.mvn"),
    ASR_TIMESTAMP_DIR.name: ("model.onnx", "model_quant.onnx", "config.yaml", "am.mvn", "tokens.json"),
    ASR_PLAIN_DIR.name: ("model.onnx", "model_quant.onnx", "config.yaml", "am.mvn", "tokens.json"),
    ASR_ONLINE_DIR.name: ("model.onnx", "decoder.onnx", "config.yaml", "am.mvn", "tokens.json"),
    PUNC_DIR.name: ("model.onnx", "model_quant.onnx", "config.yaml", "tokens.json"),
    PUNC_REALTIME_DIR.name: ("model.onnx", "model_quant.onnx", "config.yaml", "tokens.json"),
    PUNC_LARGE_DIR.name: ("model.onnx", "model_quant.onnx", "config.yaml", "tokens.json", "jieba_usr_dict"),
    ASR_CONTEXTUAL_DIR.name: ("model.onnx", "model_eb.onnx", "config.yaml", "am.mvn", "tokens.json", "seg_dict"),
    ASR_SEACO_DIR.name: ("model.onnx", "model_eb.onnx", "config.yaml", "am.mvn", "tokens.json", "seg_dict"),
    ASR_8K_DIR.name: ("model.onnx", "model_quant.onnx", "config.yaml", "am.mvn", "tokens.json"),
    SENSEVOICE_DIR.name: ("model.onnx", "model_quant.onnx", "config.yaml", "am.mvn", "tokens.json"),
    LM_DIR.name: ("TLG.fst", "config.yaml", "lexicon.txt"),
}
