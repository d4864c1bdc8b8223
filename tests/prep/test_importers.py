"""Corpus importers against tiny fake corpora laid out with each corpus's real names and label-file formats."""
from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from clips.schema import metadata_problems
from clips.vocab import EMOTIONS, STYLES
from paralign.commands import import_corpus as import_command
from prep.importers import (
    IMPORTERS,
    CorpusLayoutError,
    cremad,
    esd,
    expresso,
    iemocap,
    import_corpus,
    msp_podcast,
    ravdess,
)
from prep.importers.records import rescale_to_1_5


def tone(path: Path, seconds: float = 0.3, sample_rate: int = 16000) -> Path:
    """A short sine tone, standing in for a corpus clip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), sample_rate)
    return path


def by_id(records: list[dict]) -> dict[str, dict]:
    for record in records:
        assert metadata_problems(record, need_audio_fields=False) == []
        assert record["duration"] is None and record["sample_rate"] is None
        assert Path(record["audio_path"]).is_absolute() and Path(record["audio_path"]).is_file()
        assert "." not in record["id"] and "/" not in record["id"]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))
    return {r["id"]: r for r in records}


def fields(record: dict, *names: str) -> tuple:
    return tuple(record[name] for name in names)


LABELS = ("speaker", "gender", "transcript", "emotion", "emotion_original", "style", "split")
VAD = ("valence", "arousal", "dominance")


# --- ESD -------------------------------------------------------------------------------------------------------

def make_esd(root: Path) -> None:
    # 0001 (Mandarin, female): split subfolders, GB2312 text, labels in Chinese
    tone(root / "0001/Angry/train/0001_000360.wav")
    tone(root / "0001/Angry/evaluation/0001_000385.wav")
    tone(root / "0001/Neutral/test/0001_000001.wav")
    (root / "0001/0001.txt").write_bytes(
        "0001_000001\t打远一看，它们的确很是美丽，\t中立\n0001_000360\t他生气了。\t生气\n"
        "0001_000385\t走吧。\t生气\n".encode("gb2312")
    )
    # 0011 (English, male): no split subfolders, UTF-16-LE text without a byte-order mark
    tone(root / "0011/Surprise/0011_001401.wav")
    tone(root / "0011/Happy/0011_000701.wav")
    tone(root / "0011/Happy/notes.wav")  # not an utterance: skipped
    (root / "0011/Happy/extra").mkdir()
    (root / "0011/0011.txt").write_bytes("0011_001401\tAuthor of the danger trail.\tSurprise\n".encode("utf-16-le"))
    # 0015 (English, female): space-separated text file
    tone(root / "0015/Sad/0015_001051.wav")
    (root / "0015/0015.txt").write_text("0015_001051 The nine  the eggs. Sad\n", encoding="utf-8")
    (root / "README.txt").write_text("not a speaker")


def test_esd(tmp_path: Path) -> None:
    make_esd(tmp_path)
    records = by_id(list(import_corpus("esd", tmp_path)))
    assert set(records) == {"esd_0001_000360", "esd_0001_000385", "esd_0001_000001", "esd_0011_001401",
                            "esd_0011_000701", "esd_0015_001051"}
    assert fields(records["esd_0001_000360"], *LABELS) == (
        "0001", "female", "他生气了。", "angry", "Angry", [], "train")
    assert records["esd_0001_000385"]["split"] == "val"
    assert fields(records["esd_0001_000001"], "transcript", "emotion", "split") == (
        "打远一看，它们的确很是美丽，", "neutral", "test")
    assert fields(records["esd_0011_001401"], *LABELS) == (
        "0011", "male", "Author of the danger trail.", "surprised", "Surprise", [], "train")
    assert records["esd_0011_000701"]["transcript"] is None  # missing from the text file: kept, not guessed
    assert fields(records["esd_0015_001051"], "gender", "transcript", "emotion") == (
        "female", "The nine the eggs.", "sad")
    assert records["esd_0001_000360"]["language"] == "zh" and records["esd_0011_001401"]["language"] == "en"
    assert all(fields(r, *VAD) == (None, None, None) for r in records.values())
    assert records["esd_0011_001401"]["dataset"] == "esd"
    assert records["esd_0011_001401"]["audio_path"] == str((tmp_path / "0011/Surprise/0011_001401.wav").absolute())


def test_esd_text_file_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "0012.txt"
    path.write_text("0012_000001\tHello there.\tNeutral\n", encoding="utf-16")
    assert esd.read_transcripts(path) == {"0012_000001": "Hello there."}


# --- RAVDESS ---------------------------------------------------------------------------------------------------

def test_ravdess(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tone(tmp_path / "Actor_01/03-01-05-02-01-01-01.wav")
    tone(tmp_path / "Actor_12/03-01-07-01-02-02-12.wav")
    tone(tmp_path / "Actor_12/03-02-01-01-01-01-12.wav")  # song
    tone(tmp_path / "Actor_12/03-01-09-01-01-01-12.wav")  # emotion code 09 does not exist: skipped
    tone(tmp_path / "Actor_12/03-01-01-01-01-01-13.wav")  # actor 13 in Actor_12: skipped
    records = by_id(list(import_corpus("ravdess", tmp_path)))
    assert "ravdess: 1 item(s): actor in the file name differs" in caplog.text
    assert "ravdess: 1 item(s): file name is not an audio-only RAVDESS code" in caplog.text
    assert set(records) == {"ravdess_03-01-05-02-01-01-01", "ravdess_03-01-07-01-02-02-12",
                            "ravdess_03-02-01-01-01-01-12"}
    assert fields(records["ravdess_03-01-05-02-01-01-01"], *LABELS) == (
        "Actor_01", "male", "Kids are talking by the door", "angry", "angry", [], "train")
    assert records["ravdess_03-01-05-02-01-01-01"]["extra"] == {"intensity": "strong"}
    assert fields(records["ravdess_03-01-07-01-02-02-12"], *LABELS) == (
        "Actor_12", "female", "Dogs are sitting by the door", "disgusted", "disgust", [], "train")
    assert fields(records["ravdess_03-02-01-01-01-01-12"], "emotion", "style") == ("neutral", ["singing"])
    assert all(fields(r, *VAD) == (None, None, None) for r in records.values())


# --- CREMA-D ---------------------------------------------------------------------------------------------------

def make_cremad(root: Path, demographics: bool = True) -> None:
    tone(root / "AudioWAV/1001_DFA_ANG_XX.wav")
    tone(root / "AudioWAV/1002_IEO_HAP_HI.wav")
    tone(root / "AudioWAV/1003_ITS_SUR_LO.wav")  # SUR is no CREMA-D emotion: skipped
    if demographics:
        (root / "VideoDemographics.csv").write_text(
            "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
            "1002,21,Female,Caucasian,Not Hispanic\n1003,21,Female,Caucasian,Not Hispanic\n"
        )


def test_cremad(tmp_path: Path) -> None:
    make_cremad(tmp_path)
    records = by_id(list(import_corpus("cremad", tmp_path)))
    assert set(records) == {"cremad_1001_DFA_ANG_XX", "cremad_1002_IEO_HAP_HI"}
    assert fields(records["cremad_1001_DFA_ANG_XX"], *LABELS) == (
        "1001", "male", "Don't forget a jacket", "angry", "ANG", [], "train")
    assert records["cremad_1001_DFA_ANG_XX"]["extra"] == {"intensity": "unspecified"}
    assert fields(records["cremad_1002_IEO_HAP_HI"], *LABELS) == (
        "1002", "female", "It's eleven o'clock", "happy", "HAP", [], "train")
    assert records["cremad_1002_IEO_HAP_HI"]["extra"] == {"intensity": "high"}
    assert all(fields(r, *VAD) == (None, None, None) for r in records.values())


def test_cremad_without_demographics_has_no_gender(tmp_path: Path) -> None:
    make_cremad(tmp_path, demographics=False)
    records = list(import_corpus("cremad", tmp_path))
    assert len(records) == 2 and all(r["gender"] is None for r in records)


def test_cremad_unknown_sex_raises(tmp_path: Path) -> None:
    make_cremad(tmp_path)
    (tmp_path / "VideoDemographics.csv").write_text("ActorID,Age,Sex,Race,Ethnicity\n1001,51,M?,x,y\n")
    with pytest.raises(ValueError, match="actor 1001 has unknown Sex"):
        import_corpus("cremad", tmp_path)


# --- IEMOCAP ---------------------------------------------------------------------------------------------------

IEMOCAP_EVALUATION = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
C-E3:\tNeutral;\t()
A-E3:\tval 3; act 2; dom  2;\t()

[10.0100 - 11.3925]\tSes01F_impro01_M000\texc\t[4.0000, 3.5000, 3.0000]
C-E1:\tExcited;\t()

[14.8872 - 18.0175]\tSes01F_impro01_F001\txxx\t[1.0000, 5.0000, 1.5000]
C-E2:\tFrustration;\t()

[19.2900 - 20.7875]\tSes01F_impro01_M001\tfru\t[2.0000, 3.5000, 3.5000]

[21.0000 - 22.0000]\tSes01F_impro01_F002\tang\t[1.5000, 6.5000, 4.0000]
"""
IEMOCAP_TRANSCRIPTS = """Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.
Ses01F_impro01_M000 [010.0100-011.3925]: Do you have your forms?
Ses01F_impro01_F001 [014.8872-018.0175]: Yeah. [LAUGHTER]
M: [BREATHING]
Ses01F_impro01_F002 [021.0000-022.0000]: No!
"""


def make_iemocap(root: Path) -> None:
    session = root / "Session1"
    for utterance in ("F000", "M000", "F001", "F002"):  # M001 is labelled but its wav is missing: skipped
        tone(session / f"sentences/wav/Ses01F_impro01/Ses01F_impro01_{utterance}.wav")
    (session / "dialog/EmoEvaluation/Categorical").mkdir(parents=True)
    (session / "dialog/EmoEvaluation/Ses01F_impro01.txt").write_text(IEMOCAP_EVALUATION)
    (session / "dialog/EmoEvaluation/Categorical/Ses01F_impro01_e1_cat.txt").write_text(":Neutral state; ()\n")
    (session / "dialog/transcriptions").mkdir(parents=True)
    (session / "dialog/transcriptions/Ses01F_impro01.txt").write_text(IEMOCAP_TRANSCRIPTS)


def test_iemocap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_iemocap(tmp_path)
    records = by_id(list(import_corpus("iemocap", tmp_path)))
    assert "iemocap: 1 item(s): labelled utterance without its wav file" in caplog.text
    assert set(records) == {"iemocap_Ses01F_impro01_F000", "iemocap_Ses01F_impro01_M000",
                            "iemocap_Ses01F_impro01_F001", "iemocap_Ses01F_impro01_F002"}
    first = records["iemocap_Ses01F_impro01_F000"]
    assert fields(first, *LABELS) == ("Ses01_F", "female", "Excuse me.", "neutral", "neu", [], "train")
    assert fields(first, *VAD) == (2.5, 2.5, 2.5)
    assert first["extra"] == {"session": 1}
    second = records["iemocap_Ses01F_impro01_M000"]
    assert fields(second, *LABELS) == (
        "Ses01_M", "male", "Do you have your forms?", "happy", "exc", [], "train")
    assert fields(second, *VAD) == (4.0, 3.5, 3.0)
    no_agreement = records["iemocap_Ses01F_impro01_F001"]
    assert fields(no_agreement, "emotion", "emotion_original", "transcript") == (None, "xxx", "Yeah. [LAUGHTER]")
    assert fields(no_agreement, *VAD) == (1.0, 5.0, 1.5)
    off_scale = records["iemocap_Ses01F_impro01_F002"]  # activation 6.5 is off the 1-5 scale
    assert fields(off_scale, "emotion", *VAD) == ("angry", None, None, None)


# --- MSP-Podcast -----------------------------------------------------------------------------------------------

def make_msp_podcast(root: Path) -> None:
    for name in ("MSP-PODCAST_0001_0008", "MSP-PODCAST_0002_0033", "MSP-PODCAST_0003_0001", "MSP-PODCAST_0004_0002"):
        tone(root / f"Audios/{name}.wav")
    (root / "Labels").mkdir()
    (root / "Labels/labels_consensus.csv").write_text(
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
        "MSP-PODCAST_0001_0008.wav,N,2.2,4.0,2.6,30,Male,Test1\n"
        "MSP-PODCAST_0002_0033.wav,C,7.0,1.0,5.5,127,Female,Development\n"
        "MSP-PODCAST_0003_0001.wav,X,4.0,4.0,4.0,Unknown,Unknown,Train\n"
        "MSP-PODCAST_0004_0002.wav,H,4.0,7.5,4.0,12,Female,Train\n"
        "MSP-PODCAST_9999_0001.wav,A,4.0,4.0,4.0,5,Male,Train\n"  # audio missing: skipped
    )
    (root / "Transcripts").mkdir()
    (root / "Transcripts/MSP-PODCAST_0001_0008.txt").write_text("so i think that was it\n")


def test_msp_podcast(tmp_path: Path) -> None:
    make_msp_podcast(tmp_path)
    records = by_id(list(import_corpus("msp-podcast", tmp_path)))
    assert set(records) == {"msp-podcast_MSP-PODCAST_0001_0008", "msp-podcast_MSP-PODCAST_0002_0033",
                            "msp-podcast_MSP-PODCAST_0003_0001", "msp-podcast_MSP-PODCAST_0004_0002"}
    first = records["msp-podcast_MSP-PODCAST_0001_0008"]
    assert fields(first, *LABELS) == ("30", "male", "so i think that was it", "neutral", "N", [], "test1")
    # valence 4.0, arousal 2.2, dominance 2.6 on 1-7 -> 1 + 4 (x - 1) / 6
    assert fields(first, *VAD) == pytest.approx((3.0, 1.8, 1 + 4 * 1.6 / 6))
    second = records["msp-podcast_MSP-PODCAST_0002_0033"]
    assert fields(second, *LABELS) == ("127", "female", None, "contempt", "C", [], "val")
    assert fields(second, *VAD) == pytest.approx((1.0, 5.0, 1 + 4 * 4.5 / 6))
    unknown = records["msp-podcast_MSP-PODCAST_0003_0001"]
    assert fields(unknown, *LABELS) == (None, None, None, None, "X", [], "train")
    assert fields(unknown, *VAD) == (3.0, 3.0, 3.0)
    off_scale = records["msp-podcast_MSP-PODCAST_0004_0002"]  # valence 7.5 is off the 1-7 scale
    assert fields(off_scale, "emotion", *VAD) == ("happy", None, None, None)


def test_msp_podcast_missing_column_is_a_layout_error(tmp_path: Path) -> None:
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels/labels_consensus.csv").write_text("FileName,EmoClass\nMSP-PODCAST_0001_0008.wav,N\n")
    with pytest.raises(CorpusLayoutError, match="EmoAct"):
        import_corpus("msp-podcast", tmp_path)


# --- Expresso --------------------------------------------------------------------------------------------------

def make_expresso(root: Path, with_splits: bool = True) -> None:
    read = root / "audio_48khz/read"
    tone(read / "ex01/whisper/base/ex01_whisper_00001.wav")
    tone(read / "ex02/default/base/ex02_default_emphasis_00003.wav")
    tone(read / "ex03/confused/base/ex03_confused_00349.wav")
    tone(read / "ex04/happy/base/ex04_happy_00010.wav")
    tone(read / "ex04/laughing/base/ex04_laughing_00002.wav")
    tone(read / "ex01/default/longform/ex01_default_longform_00001.wav")  # not imported
    tone(root / "audio_48khz/conversational/ex01-ex02/angry/ex01-ex02_angry_001.wav")  # not imported
    (root / "read_transcriptions.txt").write_text(
        "ex01_whisper_00001\tReady for bed, lamb chop?\n"
        "ex02_default_emphasis_00003\t*Of course*, they're going to be bad things written about me *always*.\n"
        "ex03_confused_00349\tWhat's this author's name?\n"
        "ex04_happy_00010\tIt's a classic!\n"
    )
    if with_splits:
        (root / "splits").mkdir()
        (root / "splits/dev.txt").write_text(
            "# If only one segment is extracted, ...\nex01-ex02_default_007\t(,60.0s)\nex03_confused_00349\n"
        )
        (root / "splits/test.txt").write_text("ex04_happy_00010\n")
        (root / "splits/train.txt").write_text("ex01_whisper_00001\nex02_default_emphasis_00003\n")


def test_expresso(tmp_path: Path) -> None:
    make_expresso(tmp_path)
    records = by_id(list(import_corpus("expresso", tmp_path)))
    assert set(records) == {"expresso_ex01_whisper_00001", "expresso_ex02_default_emphasis_00003",
                            "expresso_ex03_confused_00349", "expresso_ex04_happy_00010",
                            "expresso_ex04_laughing_00002"}
    assert fields(records["expresso_ex01_whisper_00001"], *LABELS) == (
        "ex01", None, "Ready for bed, lamb chop?", None, "whisper", ["whispered"], "train")
    assert fields(records["expresso_ex02_default_emphasis_00003"], *LABELS) == (
        "ex02", None, "Of course, they're going to be bad things written about me always.", "neutral", "default",
        ["default"], "train")
    assert fields(records["expresso_ex03_confused_00349"], *LABELS) == (
        "ex03", None, "What's this author's name?", None, "confused", [], "val")
    assert fields(records["expresso_ex04_happy_00010"], "emotion", "style", "split") == ("happy", [], "test")
    assert fields(records["expresso_ex04_laughing_00002"], "transcript", "emotion", "style", "split") == (
        None, None, ["laughing"], "train")
    assert all(fields(r, *VAD) == (None, None, None) for r in records.values())


def test_expresso_without_split_files_is_all_train(tmp_path: Path) -> None:
    make_expresso(tmp_path, with_splits=False)
    assert {r["split"] for r in import_corpus("expresso", tmp_path)} == {"train"}


# --- manifest --------------------------------------------------------------------------------------------------

def test_manifest_goes_through_read_manifest(tmp_path: Path) -> None:
    tone(tmp_path / "clips/a.wav")
    manifest = tmp_path / "mine.jsonl"
    manifest.write_text(json.dumps({"audio_path": "clips/a.wav", "emotion": "sad", "transcript": "hi"}) + "\n")
    (record,) = import_corpus("manifest", manifest)
    assert fields(record, "id", "dataset", "emotion", "transcript") == ("a", "mine", "sad", "hi")
    assert record["audio_path"] == str((tmp_path / "clips/a.wav").resolve())
    with pytest.raises(CorpusLayoutError, match="not a manifest file"):
        import_corpus("manifest", tmp_path)


# --- label mappings: every label each corpus has, onto the shared vocabulary ------------------------------------

CORPUS_LABELS = {  # written from each corpus's documentation, independently of the importers' tables
    "esd": (esd.EMOTION_MAP, {"Neutral", "Angry", "Happy", "Sad", "Surprise"}),
    "ravdess": (ravdess.EMOTION_CODES, {f"0{n}" for n in range(1, 9)}),
    "cremad": (cremad.EMOTION_MAP, {"ANG", "DIS", "FEA", "HAP", "NEU", "SAD"}),
    "iemocap": (iemocap.EMOTION_MAP, {"neu", "hap", "exc", "sad", "ang", "sur", "fea", "dis", "fru", "oth", "xxx"}),
    "msp-podcast": (msp_podcast.EMOTION_MAP, set("ASHUFDCNOX")),
    "expresso": (expresso.STYLE_MAP,
                 {"confused", "default", "enunciated", "happy", "laughing", "narration", "sad", "whisper", "singing"}),
}


def shared_labels(corpus: str, target) -> tuple[str | None, list[str]]:
    """(emotion, styles) of one mapping entry; the tables differ in shape where the corpus needs more."""
    if corpus == "ravdess":
        return target[1], []
    if corpus == "expresso":
        return target
    return target, []


@pytest.mark.parametrize("corpus", sorted(CORPUS_LABELS))
def test_label_mapping_covers_the_corpus(corpus: str) -> None:
    mapping, labels = CORPUS_LABELS[corpus]
    assert set(mapping) == labels
    for target in mapping.values():
        emotion, styles = shared_labels(corpus, target)
        assert emotion is None or emotion in EMOTIONS
        assert all(style in STYLES for style in styles)


def test_other_tables_cover_the_corpus() -> None:
    assert set(cremad.SENTENCES) == {"IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI",
                                     "WSI"}
    assert len(set(cremad.SENTENCES.values())) == 12
    assert set(msp_podcast.SPLITS) == {"Train", "Development", "Test1", "Test2", "Test3"}
    assert len(esd.FEMALE_SPEAKERS) == 10 and esd.FEMALE_SPEAKERS <= {f"{n:04d}" for n in range(1, 21)}


def test_rescale_to_1_5() -> None:
    assert rescale_to_1_5(1.0, 1, 7) == 1.0 and rescale_to_1_5(7.0, 1, 7) == 5.0 and rescale_to_1_5(4.0, 1, 7) == 3.0
    assert rescale_to_1_5(None, 1, 7) is None
    with pytest.raises(ValueError, match="outside"):
        rescale_to_1_5(0.5, 1, 7)


# --- errors ----------------------------------------------------------------------------------------------------

def test_unknown_corpus(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown corpus 'savee'; known: esd, ravdess"):
        import_corpus("savee", tmp_path)


@pytest.mark.parametrize("corpus", sorted(set(IMPORTERS) - {"manifest"}))
def test_wrong_root(tmp_path: Path, corpus: str) -> None:
    make_cremad(tmp_path / "cremad")  # a real corpus, but the wrong one (and CREMA-D is wrong for none but itself)
    wrong = tmp_path / ("ravdess" if corpus == "cremad" else "cremad")
    wrong.mkdir(exist_ok=True)
    with pytest.raises(CorpusLayoutError, match="does not look like"):
        import_corpus(corpus, wrong)
    with pytest.raises(CorpusLayoutError, match="is not a directory"):
        import_corpus(corpus, tmp_path / "missing")


# --- the command -----------------------------------------------------------------------------------------------

def run_command(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    import_command.register(parser.add_subparsers())
    args = parser.parse_args(["import", *argv])
    return args.func(args)


def shard_splits(folder: Path) -> dict[str, int]:
    manifest = json.loads((folder / "manifest.json").read_text())
    counts: dict[str, int] = {}
    for shard in manifest["shards"]:
        counts[shard["split"]] = counts.get(shard["split"], 0) + shard["samples"]
    return counts


def test_command_writes_shards_per_split(tmp_path: Path) -> None:
    make_expresso(tmp_path / "expresso")
    assert run_command("expresso", "--root", str(tmp_path / "expresso"), "--out", str(tmp_path / "shards"),
                       "--sample-rate", "8000") == 0
    assert shard_splits(tmp_path / "shards") == {"train": 3, "val": 1, "test": 1}
    with tarfile.open(tmp_path / "shards/test-000000.tar") as shard:
        (member,) = [m for m in shard.getmembers() if m.name.endswith(".json")]
        meta = json.load(shard.extractfile(member))
    assert (meta["id"], meta["emotion"], meta["sample_rate"], meta["duration"]) == (
        "expresso_ex04_happy_00010", "happy", 8000, pytest.approx(0.3))
    assert run_command("expresso", "--root", str(tmp_path / "expresso"), "--out", str(tmp_path / "eval"),
                       "--split", "test") == 0
    assert shard_splits(tmp_path / "eval") == {"test": 5}


def test_command_puts_manifest_rows_without_split_in_train(tmp_path: Path) -> None:
    tone(tmp_path / "a.wav")
    tone(tmp_path / "b.wav")
    manifest = tmp_path / "m.csv"
    manifest.write_text("audio_path,emotion,split\na.wav,happy,\nb.wav,sad,test\n")
    assert run_command("manifest", "--root", str(manifest), "--out", str(tmp_path / "shards")) == 0
    assert shard_splits(tmp_path / "shards") == {"train": 1, "test": 1}


def test_command_bad_input_exits_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="does not look like RAVDESS"):
        run_command("ravdess", "--root", str(tmp_path), "--out", str(tmp_path / "out"))
    with pytest.raises(SystemExit, match="letters, digits and underscores"):
        run_command("ravdess", "--root", str(tmp_path), "--out", str(tmp_path / "out"), "--split", "dev-1")
