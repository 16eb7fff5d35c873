"""Pretraining corpus: sentence splitting, Gutenberg stripping, WikiText articles, corpus assembly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlflow.config import CorpusConfig
from tlflow.pretraining.corpus import (
    CorpusError,
    Document,
    load_corpus,
    read_gutenberg,
    read_wikitext,
    split_heldout,
    split_sentences,
    strip_gutenberg,
    task_documents,
)

pytestmark = [pytest.mark.unit]

DATA = Path(__file__).resolve().parents[2] / "data" / "corpus"
WIKITEXT = DATA / "wikitext2"
GUTENBERG = DATA / "gutenberg"
GUTENBERG_FILES = sorted(GUTENBERG.glob("*.txt")) if GUTENBERG.is_dir() else []


def needs_data(test):
    """Reads the real corpus in data/: an `integration` test, skipped without it."""
    return pytest.mark.integration(pytest.mark.needs_data(test))


# ---------------------------------------------------------------------------------------------
# split_sentences
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three? four", ["One.", "Two!", "Three? four"]),
        (
            "Mr. Bennet replied. Mrs. Long came. Dr. Watson and St. John left. Smith Jr. spoke.",
            ["Mr. Bennet replied.", "Mrs. Long came.", "Dr. Watson and St. John left.", "Smith Jr. spoke."],
        ),
        (
            "Fruit, e.g. Apples, i.e. Red ones, etc. Are good. Cats vs. Dogs.",
            ["Fruit, e.g. Apples, i.e. Red ones, etc. Are good.", "Cats vs. Dogs."],
        ),
        (
            "It is related to H. americanus. Drawn by F. H. Townsend. The end.",
            ["It is related to H. americanus.", "Drawn by F. H. Townsend.", "The end."],
        ),
        ("The U.S. Army came. It was I. Then he left.", ["The U.S. Army came.", "It was I.", "Then he left."]),
        ("See No. 5 today. No. I will not.", ["See No. 5 today.", "No.", "I will not."]),
        (
            "“Is he married?” “Oh! Single, my dear.” She smiled.",
            ["“Is he married?”", "“Oh!", "Single, my dear.”", "She smiled."],
        ),
        (
            "'Edith!' said Margaret, gently. (It was late.) Next day.",
            ["'Edith!' said Margaret, gently.", "(It was late.)", "Next day."],
        ),
        ('He said "Go." Then left.', ['He said "Go."', "Then left."]),
        ("Prices rose by 5.5 percent. 1990 was worse.", ["Prices rose by 5.5 percent.", "1990 was worse."]),
        ("A line\nwrapped  here. And\tanother.", ["A line wrapped here.", "And another."]),
        ("", []),
        ("   ", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_split_sentences_wikitext_style():
    text = (
        " It is closely related to the American lobster , H. americanus . It may grow to 60 cm ( 24 in ) . "
        '<unk> larvae hatch in 0 @.@ 7 days . In life , lobsters are blue , only becoming " lobster red " on '
        'cooking . He said " it was red . " The claws differ ! " Cutter " is one . '
    )
    assert split_sentences(text) == [
        "It is closely related to the American lobster , H. americanus .",
        "It may grow to 60 cm ( 24 in ) .",
        "<unk> larvae hatch in 0 @.@ 7 days .",
        'In life , lobsters are blue , only becoming " lobster red " on cooking .',
        'He said " it was red . "',
        "The claws differ !",
        '" Cutter " is one .',
    ]


# ---------------------------------------------------------------------------------------------
# strip_gutenberg
# ---------------------------------------------------------------------------------------------

HAND_MADE_BOOK = (
    "\ufeffThe Project Gutenberg EBook of Tiny Tales, by Nobody\r\n"
    "\r\n"
    "This eBook is for the use of anyone anywhere at no cost. www.gutenberg.org\r\n"
    "\r\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK TINY TALES ***\r\n"
    "\r\n"
    "Produced by Some Volunteer\r\n"
    "\r\n"
    "CHAPTER I\r\n"
    "\r\n"
    "It was a dark night. The wind\r\n"
    "blew hard.\r\r"
    "Then it stopped.\r\n"
    "\r\n"
    "End of the Project Gutenberg EBook of Tiny Tales, by Nobody\r\n"
    "\r\n"
    "*** END OF THIS PROJECT GUTENBERG EBOOK TINY TALES ***\r\n"
    "\r\n"
    "*** START: FULL LICENSE ***\r\n"
    "THE FULL PROJECT GUTENBERG LICENSE\r\n"
)


def test_strip_gutenberg_keeps_only_the_body():
    assert (
        strip_gutenberg(HAND_MADE_BOOK)
        == "CHAPTER I\n\nIt was a dark night. The wind\nblew hard.\n\nThen it stopped.\n"
    )


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("***START OF THE PROJECT GUTENBERG EBOOK JANE EYRE***", "***END OF THE PROJECT GUTENBERG EBOOK JANE EYRE***"),
        ("*** START OF THE PROJECT GUTENBERG EBOOK ***", "*** END OF THE PROJECT GUTENBERG EBOOK ***"),
        (
            "*** START OF THIS PROJECT GUTENBERG EBOOK DR. JEKYLL ***",
            "*** END OF THIS PROJECT GUTENBERG EBOOK DR. JEKYLL ***",
        ),
    ],
)
def test_strip_gutenberg_marker_variants(start, end):
    text = f"Header line\nLicence words\n{start}\n\nBody text here.\n\n{end}\nLicence words\n"
    assert strip_gutenberg(text) == "Body text here.\n"


def test_strip_gutenberg_without_start_marker_raises():
    with pytest.raises(CorpusError, match="START OF"):
        strip_gutenberg("Just a text with *** END OF THE PROJECT GUTENBERG EBOOK X ***\n")


def test_strip_gutenberg_without_end_marker_stops_at_the_licence():
    text = "*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\nBody.\n\n*** START: FULL LICENSE ***\n\nTerms.\n"
    assert strip_gutenberg(text) == "Body.\n"


@needs_data
@pytest.mark.parametrize("path", GUTENBERG_FILES, ids=lambda p: p.name)
def test_strip_gutenberg_on_real_books(path):
    raw = path.read_text(encoding="utf-8-sig")
    body = strip_gutenberg(raw)
    assert len(body) > 0.9 * len(raw.replace("\r\n", "\n")) - 25_000  # the book, not a fragment
    for forbidden in ("START OF", "END OF", "www.gutenberg.org", "Project Gutenberg", "\ufeff", "\r"):
        assert forbidden not in body, f"{path.name}: {forbidden!r} left in the text"


@needs_data
def test_all_fourteen_gutenberg_books_are_read():
    assert len(GUTENBERG_FILES) == 14


# ---------------------------------------------------------------------------------------------
# Readers on hand-made files
# ---------------------------------------------------------------------------------------------

WIKI_SAMPLE = (
    " \n"
    " = First Article = \n"
    " \n"
    " The first article is short . It has <unk> words . \n"
    " \n"
    " = = History = = \n"
    " \n"
    " It began in 1990 . \n"
    " Table cell follows \n"
    " = 1 <unk> / s and a nominal <unk> k = \n"
    " \n"
    " = = = Deeper = = = \n"
    " \n"
    " Still the first article . \n"
    " \n"
    " = Second = Article = \n"
    " \n"
    " Another one . \n"
)


def test_read_wikitext_articles(tmp_path):
    path = tmp_path / "valid.txt"
    path.write_text(WIKI_SAMPLE, encoding="utf-8")
    docs = read_wikitext(path)
    assert [d.doc_id for d in docs] == ["wikitext2/valid.txt#0 First Article", "wikitext2/valid.txt#1 Second = Article"]
    assert all(d.source == "wikitext2" for d in docs)
    assert docs[0].sentences == [
        "The first article is short .",
        "It has [UNK] words .",
        "It began in 1990 .",
        "Table cell follows",
        "= 1 [UNK] / s and a nominal [UNK] k =",
        "Still the first article .",
    ]
    assert docs[1].sentences == ["Another one ."]
    # A folder reads every *.txt, sorted.
    (tmp_path / "test.txt").write_text(" = Zeta = \n \n Last . \n", encoding="utf-8")
    assert [d.doc_id for d in read_wikitext(tmp_path)][0] == "wikitext2/test.txt#0 Zeta"


def _book(body: str) -> str:
    return (
        "\ufeffThe Project Gutenberg EBook\r\n\r\n*** START OF THE PROJECT GUTENBERG EBOOK T ***\r\n\r\n"
        + body.replace("\n", "\r\n")
        + "\r\n\r\n*** END OF THE PROJECT GUTENBERG EBOOK T ***\r\nlicence\r\n"
    )


def test_read_gutenberg_chapters_and_paragraphs(tmp_path):
    filler = " ".join(["Words go on."] * 12)
    body = (
        "A TITLE\n\nCONTENTS\n\nCHAPTER I\nCHAPTER II\n\n"
        f"CHAPTER I.\n\nIt was a _dark_ night. The wind\nblew hard.\n\n{filler}\n\n"
        f"Chapter 2\n\nMr. Smith came.\n2)\nHe left. {filler}\n\n"
        f"XII\n\n{filler}\n\n"
    )
    (tmp_path / "b.txt").write_bytes(_book(body).encode("utf-8"))
    (tmp_path / "a.txt").write_bytes(_book(f"No chapters here. {filler}").encode("utf-8"))
    (tmp_path / "notes.csv").write_text("ignored", encoding="utf-8")
    docs = read_gutenberg(tmp_path)
    assert [d.doc_id for d in docs] == [
        "gutenberg/a.txt",
        "gutenberg/b.txt#chapter-1",
        "gutenberg/b.txt#chapter-2",
        "gutenberg/b.txt#chapter-3",
    ]
    assert docs[1].sentences[:3] == ["It was a dark night.", "The wind blew hard.", "Words go on."]
    assert docs[2].sentences[:2] == ["Mr. Smith came.", "He left."]
    assert all(d.source == "gutenberg" for d in docs)
    # The contents table (under 30 words) is not a document.
    assert not any("CONTENTS" in s for d in docs for s in d.sentences)


def test_read_gutenberg_without_start_marker_names_the_file(tmp_path):
    (tmp_path / "bad.txt").write_text("No markers at all.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="bad.txt"):
        read_gutenberg(tmp_path)


def test_missing_folders_raise(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        read_gutenberg(tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="not found"):
        read_wikitext(tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="no .txt files"):
        read_wikitext(tmp_path)


def test_undecodable_file_names_file_and_line(tmp_path):
    path = tmp_path / "valid.txt"
    path.write_bytes(b" = Title = \n \n fine line . \n bad \xff byte . \n")
    with pytest.raises(CorpusError, match=r"valid\.txt: line 4: undecodable"):
        read_wikitext(path)


# ---------------------------------------------------------------------------------------------
# Corpus assembly
# ---------------------------------------------------------------------------------------------


def test_task_documents():
    docs = task_documents(["Great film. Loved it!", "meh", ""])
    assert docs == [
        Document("task", "task#0", ["Great film.", "Loved it!"]),
        Document("task", "task#1", ["meh"]),
        Document("task", "task#2", []),
    ]


def _corpus_folders(tmp_path: Path) -> CorpusConfig:
    wiki = tmp_path / "wiki"
    wiki.mkdir()
    articles = "".join(f" \n = Article {i} = \n \n Text of article {i} . More text . \n" for i in range(6))
    (wiki / "valid.txt").write_text(articles, encoding="utf-8")
    books = tmp_path / "books"
    books.mkdir()
    (books / "b.txt").write_bytes(_book("One whole book. " + " ".join(["Words go on."] * 12)).encode("utf-8"))
    return CorpusConfig(sources=["task", "wikitext2", "gutenberg"], wikitext_dir=str(wiki), gutenberg_dir=str(books))


def test_load_corpus_sources_in_order_and_empty_documents_dropped(tmp_path):
    cfg = _corpus_folders(tmp_path)
    docs = load_corpus(cfg, task_texts=["A task text. Two sentences.", "  "])
    assert [d.source for d in docs] == ["task"] + ["wikitext2"] * 6 + ["gutenberg"]
    assert docs[0].sentences == ["A task text.", "Two sentences."]


def test_load_corpus_task_needs_texts(tmp_path):
    with pytest.raises(CorpusError, match="task"):
        load_corpus(_corpus_folders(tmp_path))


def test_load_corpus_max_documents_is_seeded_and_keeps_order(tmp_path):
    cfg = _corpus_folders(tmp_path)
    all_ids = [d.doc_id for d in load_corpus(cfg, task_texts=["x."])]
    cfg.max_documents = 4
    one = [d.doc_id for d in load_corpus(cfg, task_texts=["x."], seed=3)]
    two = [d.doc_id for d in load_corpus(cfg, task_texts=["x."], seed=3)]
    assert one == two and len(one) == 4
    assert one == [i for i in all_ids if i in one]  # original order kept
    others = {tuple(d.doc_id for d in load_corpus(cfg, task_texts=["x."], seed=s)) for s in range(10)}
    assert len(others) > 1  # the seed matters


def test_split_heldout():
    docs = [Document("task", f"task#{i}", [f"s{i}."]) for i in range(40)]
    train, held = split_heldout(docs, 0.1, seed=1)
    assert len(held) == 4 and len(train) == 36
    assert {d.doc_id for d in train}.isdisjoint(d.doc_id for d in held)
    assert train == [d for d in docs if d in train]
    assert split_heldout(docs, 0.1, seed=1) == (train, held)
    assert len(split_heldout(docs[:2], 0.01, seed=0)[1]) == 1
    assert split_heldout(docs[:1], 0.2, seed=0) == (docs[:1], [])
    assert split_heldout(docs, 0.0, seed=0) == (docs, [])


# ---------------------------------------------------------------------------------------------
# Real corpora
# ---------------------------------------------------------------------------------------------


@needs_data
def test_read_wikitext_real_files():
    valid = read_wikitext(WIKITEXT / "valid.txt")
    test = read_wikitext(WIKITEXT / "test.txt")
    # WikiText-2 has 60 validation and 60 test articles. (data/README.md says 124 in all: it counts
    # every line that starts with " = Word", including table cells such as " = National record ".)
    assert len(valid) == 60 and len(test) == 60
    assert valid[0].doc_id == "wikitext2/valid.txt#0 Homarus gammarus"
    assert valid[0].sentences[0].startswith("Homarus gammarus , known as the European lobster")
    assert test[0].doc_id == "wikitext2/test.txt#0 Robert <unk>"
    sentences = [s for d in valid + test for s in d.sentences]
    assert len(sentences) > 15_000
    assert not any(s.startswith("= ") and s.endswith(" =") and "= =" in s for s in sentences)
    assert 400_000 < sum(len(s.split()) for s in sentences) < 460_000


@needs_data
def test_read_gutenberg_real_books():
    docs = read_gutenberg(GUTENBERG)
    books = {d.doc_id.split("#")[0] for d in docs}
    assert len(books) == 14
    assert len(docs) > 400  # chapters, not books
    assert any(d.doc_id == "gutenberg/1342-0.txt#chapter-1" for d in docs)
    first = next(d for d in docs if d.doc_id == "gutenberg/1342-0.txt#chapter-1")
    assert first.sentences[0] == (
        "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife."
    )
    text = "\n".join(s for d in docs for s in d.sentences)
    assert "Gutenberg" not in text and "\r" not in text
    assert 2_000_000 < len(text.split()) < 2_400_000


def test_wikitext_escapes_are_undone_and_unk_becomes_the_unknown_token():
    from tlflow.modeling.models import load_tokenizer
    from tlflow.pretraining.corpus import detokenize_wikitext

    line = "the 1 @,@ 000 @-@ year <unk> cost 2 @.@ 5 million"
    assert detokenize_wikitext(line) == "the 1,000-year [UNK] cost 2.5 million"
    tokenizer = load_tokenizer("minilm-l6")
    ids = tokenizer(detokenize_wikitext(line), add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.unk_token_id) == 1
