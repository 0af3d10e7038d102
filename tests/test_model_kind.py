"""Model directories are identified from config.yaml and their files, whatever they are called."""
from __future__ import annotations

import shutil

import pytest

from funasr_wss.models.model_dir import ModelDirError
from funasr_wss.models.model_kind import ModelKind, detect_model
from funasr_wss.server.model_loader import check_role
from tests.paths import (
    ASR_8K_DIR,
    ASR_CONTEXTUAL_DIR,
    ASR_ONLINE_DIR,
    ASR_PLAIN_DIR,
    ASR_SEACO_DIR,
    ASR_TIMESTAMP_DIR,
    PUNC_DIR,
    PUNC_LARGE_DIR,
    PUNC_REALTIME_DIR,
    SENSEVOICE_DIR,
    VAD_DIR,
)

EXPECTED = {
    ASR_PLAIN_DIR: (ModelKind.PARAFORMER, 16000, ()),
    ASR_TIMESTAMP_DIR: (ModelKind.PARAFORMER_TIMESTAMP, 16000, ("timestamps",)),
    ASR_CONTEXTUAL_DIR: (ModelKind.CONTEXTUAL, 16000, ("hotwords",)),
    ASR_SEACO_DIR: (ModelKind.SEACO, 16000, ("timestamps", "hotwords")),
    ASR_8K_DIR: (ModelKind.PARAFORMER, 8000, ()),
    SENSEVOICE_DIR: (ModelKind.SENSEVOICE, 16000, ()),
    ASR_ONLINE_DIR: (ModelKind.ONLINE, 16000, ()),
    VAD_DIR: (ModelKind.VAD, 16000, ()),
    PUNC_DIR: (ModelKind.PUNC, None, ()),
    PUNC_REALTIME_DIR: (ModelKind.PUNC_REALTIME, None, ()),
    PUNC_LARGE_DIR: (ModelKind.PUNC, None, ("jieba",)),
}


@pytest.mark.parametrize("model_dir", list(EXPECTED), ids=lambda d: d.name)
def test_every_fixture_directory_is_identified(model_dir, tmp_path):
    kind, rate, features = EXPECTED[model_dir]
    # under a name that says nothing, so only the files can tell
    renamed = tmp_path / "model"
    shutil.copytree(model_dir, renamed)
    found = detect_model(renamed)
    assert (found.kind, found.sample_rate, found.features) == (kind, rate, features)


def test_the_description_names_the_rate_of_an_8k_model():
    assert "8 kHz" in detect_model(ASR_8K_DIR).description
    assert "kHz" not in detect_model(ASR_PLAIN_DIR).description


def _copy_without(src, tmp_path, *names):
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    for name in names:
        (dst / name).unlink()
    return dst


def test_a_contextual_model_without_its_embedding_model_names_it(tmp_path):
    broken = _copy_without(ASR_CONTEXTUAL_DIR, tmp_path, "model_eb.onnx", "model_eb_quant.onnx")
    with pytest.raises(ModelDirError, match=r"contextual Paraformer.*missing model_eb\.onnx or model_eb_quant\.onnx \(the hotword embedding model\)"):
        detect_model(broken)


def test_missing_vocabulary_and_cmvn_are_both_named(tmp_path):
    broken = _copy_without(SENSEVOICE_DIR, tmp_path, "tokens.json", "am.mvn")
    with pytest.raises(ModelDirError, match=r"SenseVoiceSmall.*tokens\.json \(the vocabulary\), am\.mvn"):
        detect_model(broken)


def test_a_streaming_model_needs_its_decoder(tmp_path):
    broken = _copy_without(ASR_ONLINE_DIR, tmp_path, "decoder.onnx", *[p.name for p in ASR_ONLINE_DIR.glob("decoder_quant.onnx")])
    with pytest.raises(ModelDirError, match="decoder.onnx"):
        detect_model(broken)


def test_a_directory_without_config_is_not_a_funasr_export(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ModelDirError, match="no config.yaml"):
        detect_model(tmp_path)


def test_an_unknown_model_class_with_no_telling_files_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("model: Whisper\n", encoding="utf-8")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ModelDirError, match=r"names model 'Whisper'.*known: .*SenseVoiceSmall"):
        detect_model(tmp_path)


def test_an_unknown_class_is_recognised_by_its_files(tmp_path):
    renamed = tmp_path / "m"
    shutil.copytree(ASR_SEACO_DIR, renamed)
    config = (renamed / "config.yaml").read_text("utf-8").replace("model: SeacoParaformer", "model: SeacoParaformerV2")
    (renamed / "config.yaml").write_text(config, encoding="utf-8")
    assert detect_model(renamed).kind is ModelKind.CONTEXTUAL  # model_eb.onnx: a hotword model


def test_an_unreadable_config_is_an_error(tmp_path):
    (tmp_path / "config.yaml").write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(ModelDirError, match="config.yaml cannot be read"):
        detect_model(tmp_path)


@pytest.mark.parametrize(
    "model_dir,flag,hint",
    [
        (ASR_ONLINE_DIR, "--model-dir", "pass it as --online-model-dir"),
        (ASR_PLAIN_DIR, "--online-model-dir", "pass it as --model-dir"),
        (PUNC_DIR, "--vad-dir", "pass it as --punc-dir"),
        (VAD_DIR, "--punc-dir", "pass it as --vad-dir"),
        (SENSEVOICE_DIR, "--online-model-dir", "pass it as --model-dir"),
    ],
)
def test_a_directory_given_to_the_wrong_flag_names_the_right_one(model_dir, flag, hint):
    with pytest.raises(ModelDirError, match=hint):
        check_role(detect_model(model_dir), flag)


@pytest.mark.parametrize("model_dir", [ASR_PLAIN_DIR, ASR_TIMESTAMP_DIR, ASR_CONTEXTUAL_DIR, ASR_SEACO_DIR, ASR_8K_DIR, SENSEVOICE_DIR])
def test_every_offline_recogniser_is_taken_as_model_dir(model_dir):
    assert check_role(detect_model(model_dir), "--model-dir").model_dir == model_dir


@pytest.mark.parametrize(
    "written,jieba",
    [('"false"', False), ("false", False), ("0", False), ("1", True), ('"true"', True), ("true", True)],
)
def test_seg_jieba_is_read_one_way_by_detection_and_by_the_punctuator(tmp_path, written, jieba):
    """``seg_jieba`` in config.yaml: the model's features and the punctuator's splitting agree on every spelling."""
    from funasr_wss.models.punctuation import seg_jieba_flag, wants_jieba

    punc = tmp_path / "punc"
    shutil.copytree(PUNC_DIR, punc)
    config = (punc / "config.yaml").read_text(encoding="utf-8")
    (punc / "config.yaml").write_text(config + f"\nseg_jieba: {written}\n", encoding="utf-8")
    assert ("jieba" in detect_model(punc).features) is jieba
    assert wants_jieba(punc) is jieba
    assert seg_jieba_flag(None) is False
