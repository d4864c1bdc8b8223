import pytest
import torch

from clips.vocab import EMOTIONS, STYLES
from scoring.embedder import Embedder
from scoring.label_matching import SYNONYMS, keyword_hits, label_description, match_label, match_labels


class NoEmbedder(Embedder):
    def encode(self, texts):
        raise AssertionError(f"the embedding stage should not run for {texts}")


class TableEmbedder(Embedder):
    """Fixed vectors per text (zero for unknown texts); records every batch it is asked for."""

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return torch.stack([torch.tensor(self.table.get(t, [0.0, 0.0])) for t in texts])


def test_every_vocabulary_label_has_an_entry():
    assert set(EMOTIONS) | set(STYLES) <= set(SYNONYMS)


@pytest.mark.parametrize("answer,label", [
    ("She sounds pretty FURIOUS to me.", "angry"),
    ("A joyful, cheerful voice", "happy"),
    ("I'm not angry, I'm sad.", "sad"),
    ("He is scared of something", "fearful"),
    ("Calm and relaxed.", "calm"),
])
def test_emotion_keywords(answer, label):
    assert match_label(answer, EMOTIONS, embedder=NoEmbedder()) == label


@pytest.mark.parametrize("answer,label", [
    ("She is whispering.", "whispered"),
    ("a high pitched voice", "high-pitched"),
    ("a high-pitched voice", "high-pitched"),
    ("speaking very quickly", "fast"),
    ("there is laughter in the voice", "laughing"),
])
def test_style_keywords(answer, label):
    assert match_label(answer, STYLES, embedder=NoEmbedder()) == label


def test_word_boundaries_and_negation():
    assert keyword_hits("The speaker is unhappy", ["happy"]) == {}
    assert keyword_hits("The speaker isn't happy at all", ["happy"]) == {}
    assert keyword_hits("no sign of anger", ["angry"]) == {}
    assert keyword_hits("not sure, but happy", ["happy"]) == {"happy": 1}
    assert keyword_hits("Unsure. Happy, happy!", ["happy"]) == {"happy": 2}


def test_label_outside_vocabulary_matches_by_name():
    assert match_label("quite sarcastic really", ["sarcastic", "neutral"], embedder=NoEmbedder()) == "sarcastic"


def test_tie_goes_to_nearest_tied_label_only():
    emb = TableEmbedder({
        "happy and sad": [1.0, 0.0],
        label_description("sad"): [0.8, 0.6],
        label_description("happy"): [0.0, 1.0],
        label_description("angry"): [1.0, 0.0],  # the closest, but not among the tied labels
    })
    assert match_label("happy and sad", ["happy", "sad", "angry"], embedder=emb) == "sad"


def test_fallback_and_unmatched_in_one_batch():
    emb = TableEmbedder({
        "on the verge of tears": [1.0, 0.0],
        label_description("sad"): [1.0, 0.0],
        label_description("happy"): [0.0, 1.0],
    })
    answers = ["on the verge of tears", "I have no idea", "glad!", None, "  "]
    assert match_labels(answers, ["happy", "sad"], embedder=emb) == ["sad", None, "happy", None, None]
    # labels once, then every open answer in one batch
    assert emb.calls[1] == ["on the verge of tears", "I have no idea"]


def test_no_labels_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        match_labels(["x"], [])


@pytest.mark.slow
def test_real_minilm_fallback():
    answers = ["They sound like they are about to cry", "I have no idea", "She talks in a great mood today!"]
    assert match_labels(answers, EMOTIONS) == ["sad", None, "happy"]
