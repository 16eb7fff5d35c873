"""Unlabelled pretraining text as documents of sentences, with document boundaries kept.

Next-sentence prediction needs to know which sentences follow each other and which come from
different documents, so every reader returns whole documents (a WikiText article, a chapter of a
Gutenberg novel, one in-domain text) as ordered lists of sentences instead of a flat stream.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlflow.config import CorpusConfig
from tlflow.errors import TlflowError

__all__ = [
    "CorpusError",
    "Document",
    "load_corpus",
    "read_gutenberg",
    "read_wikitext",
    "split_heldout",
    "split_sentences",
    "strip_gutenberg",
    "task_documents",
]


class CorpusError(TlflowError, ValueError):
    """Pretraining text that cannot be read; the message is one line naming the file (and line)."""


@dataclass(frozen=True)
class Document:
    """One document of the corpus: where it comes from, a readable id, and its sentences in order."""

    source: str
    doc_id: str
    sentences: list[str]


# ---------------------------------------------------------------------------------------------
# Sentence splitting
# ---------------------------------------------------------------------------------------------

#: Abbreviations after which a period does not end a sentence (compared lower-cased, without the dot).
_ABBREVIATIONS = frozenset(
    "mr mrs ms messrs dr st jr sr vs e.g i.e etc cf prof rev hon gen col capt lt sgt mt ft esq viz".split()
)
#: Abbreviations that only hold before a number ("No. 5", "vol. 2"): "No. I won't" is a sentence end.
_ABBREVIATIONS_BEFORE_DIGIT = frozenset("no nos vol vols pp p fig art ch".split())

#: Terminal punctuation with closing quotes/brackets attached, followed by whitespace.
_CANDIDATE = re.compile(r"[.!?]+[\"'”’»)\]]*(?=\s)")
#: What may open a sentence before its first letter: quotes, brackets, italics underscores.
_OPENERS = "\"'“‘«([_"
_WS = re.compile(r"\s+")


def _starts_sentence(text: str, pos: int) -> bool:
    """Whether the text at `pos` looks like the start of a sentence (capital, digit, quote, <unk>)."""
    n = len(text)
    if pos < n and text[pos] in _OPENERS:
        pos += 1
        # WikiText writes quotes as separate tokens: '" The'.
        if pos < n and text[pos] == " ":
            pos += 1
    if pos >= n:
        return False
    return text[pos].isupper() or text[pos].isdigit() or text.startswith("<unk>", pos)


def _is_abbreviation(text: str, punct_start: int, next_pos: int) -> bool:
    """Whether the period at `punct_start` belongs to an abbreviation or an initial, not a sentence end."""
    if punct_start == 0 or text[punct_start - 1].isspace():
        # A period standing alone (WikiText's " . ") is always a sentence end.
        return False
    word_start = punct_start
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:punct_start].lstrip(_OPENERS)
    if len(word) == 1 and word.isupper() and word != "I":
        # An initial: "H. americanus", "F. H. Townsend" ("I." is the pronoun far more often).
        return True
    key = word.lower()
    if key in _ABBREVIATIONS:
        return True
    if key in _ABBREVIATIONS_BEFORE_DIGIT:
        return next_pos < len(text) and text[next_pos].isdigit()
    # Dotted abbreviations and initials: "U.S.", "N.Y.", "M.D." end in a single letter.
    return "." in word and len(word.rsplit(".", 1)[-1]) == 1 and word[-1].isalpha()


def split_sentences(text: str) -> list[str]:
    """Split a paragraph into sentences.

    A sentence ends at ., ! or ? (with closing quotes/brackets attached) followed by whitespace and
    something that can open a sentence: a capital, a digit, a quote or bracket, or WikiText's
    ``<unk>``. Periods of common abbreviations (Mr., Dr., St., e.g., etc.) and of single initials
    ("H. americanus") do not end sentences. WikiText's tokenised style works as it is: there a
    sentence ends with a free-standing " . " and a closing quote is a separate '"' token, which is
    kept with the sentence it closes (the sentence has an odd number of '"' so far).
    Whitespace runs are collapsed to single spaces; empty input gives no sentences.
    """
    text = _WS.sub(" ", text).strip()
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    for match in _CANDIDATE.finditer(text):
        end = match.end()
        if end <= start:
            continue
        next_pos = end + 1  # the candidate is followed by exactly one space after collapsing
        punct = match.group()
        if (
            punct.startswith(".")
            and punct.rstrip("\"'”’»)]") == "."
            and _is_abbreviation(text, match.start(), next_pos)
        ):
            continue
        if not _starts_sentence(text, next_pos):
            continue
        # WikiText: '... it was red . " Next' closes a quote opened earlier in this sentence.
        if text.startswith('" ', next_pos) and text.count('"', start, end) % 2 == 1:
            end = next_pos + 1
            next_pos = end + 1
            if not _starts_sentence(text, next_pos):
                continue
        sentences.append(text[start:end].strip())
        start = next_pos
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """File contents decoded as UTF-8 (a BOM is dropped), with \\n line ends only."""
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        raise CorpusError(f"{path}: line {line}: undecodable bytes ({err.reason})") from None
    # Not str.splitlines(): that also breaks at \x1c, \x85, \u2028 which can occur inside text.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _text_files(path: str | Path, what: str) -> list[Path]:
    """A single file, or every *.txt of a folder (sorted); CorpusError when there is none."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CorpusError(f"{what} folder not found: {path}")
    files = sorted(p for p in path.glob("*.txt") if p.is_file())
    if not files:
        raise CorpusError(f"{what} folder has no .txt files: {path}")
    return files


# ---------------------------------------------------------------------------------------------
# WikiText
# ---------------------------------------------------------------------------------------------

#: " = Title = " with exactly one '=' on each side (sub-headings are " = = Sub = = ").
_WIKI_TITLE = re.compile(r"^ = (?!=)(.*?(?<!=)) = $")
_WIKI_SUBHEADING = re.compile(r"^ (?:= ){2,}.*?(?: =){2,} $")


def _is_blank(line: str) -> bool:
    return not line.strip()


def _wikitext_articles(file: Path) -> list[Document]:
    """The articles of one WikiText file (see `read_wikitext`)."""
    lines = _read_text(file).split("\n")
    articles: list[tuple[str, list[str]]] = []  # (id suffix, sentences)
    preamble: list[str] = []
    for i, line in enumerate(lines):
        if _is_blank(line):
            continue
        heading = _WIKI_TITLE.match(line)
        if heading and (i == 0 or _is_blank(lines[i - 1])) and (i + 1 == len(lines) or _is_blank(lines[i + 1])):
            articles.append((f"{len(articles)} {heading.group(1).strip()}", []))
        elif not _WIKI_SUBHEADING.match(line):
            (articles[-1][1] if articles else preamble).extend(split_sentences(detokenize_wikitext(line)))
    if preamble:
        articles.insert(0, ("preamble", preamble))
    return [Document("wikitext2", f"wikitext2/{file.name}#{suffix}", sents) for suffix, sents in articles]


#: WikiText's escapes for in-word hyphens and number separators, and its rare-word marker.
_WIKI_ESCAPES = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), ("<unk>", "[UNK]"))


def detokenize_wikitext(line: str) -> str:
    """Undo WikiText's escapes ("1 @,@ 000" -> "1,000", "state @-@ of" -> "state-of") and write its
    rare-word marker as "[UNK]", which BERT tokenizers map to their unknown token (so the corpus
    suite counts it) instead of splitting "<unk>" into four word pieces."""
    for escape, plain in _WIKI_ESCAPES:
        line = line.replace(escape, plain)
    return line


def read_wikitext(path: str | Path) -> list[Document]:
    """Articles of WikiText-2 files (a file, or a folder whose *.txt files are read in sorted order).

    An article starts at a top-level heading line " = Title = " that stands between blank lines
    (table cells such as " = 1 <unk> / s and a nominal <unk> k = " also match the pattern but sit
    inside paragraphs); sub-heading lines " = = Sub = = " are dropped and the article continues.
    Every other non-blank line is a paragraph, detokenized (`detokenize_wikitext`) and split into
    sentences.
    Document ids are "wikitext2/<file>#<article number from 0> <title>"; text before the first
    heading, if any, is the document "#preamble".
    """
    return [doc for file in _text_files(path, "WikiText") for doc in _wikitext_articles(file)]


# ---------------------------------------------------------------------------------------------
# Project Gutenberg
# ---------------------------------------------------------------------------------------------

_PG_START = re.compile(r"^\s*\*{3,}\s*START OF (?:THE |THIS )?PROJECT GUTENBERG E-?BOOK\b.*$", re.I | re.M)
_PG_END = re.compile(r"^\s*\*{3,}\s*END OF (?:THE |THIS )?PROJECT GUTENBERG E-?BOOK\b.*$", re.I | re.M)
#: Fallbacks when the end marker is missing: the "End of ..." line and the licence's own start.
_PG_END_FALLBACK = re.compile(r"^\s*End of (?:the )?Project Gutenberg|^\s*\*{3,}\s*START: FULL LICENSE", re.I | re.M)
#: Front-matter credit paragraphs of the digitisers, not part of the book.
_PG_CREDITS = re.compile(r"^\s*(?:Produced by|Transcribed from|This file was produced|\[Editor's Note)", re.I)
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)*")
#: Blocks among the first few of the body that are checked for credits.
_FRONT_BLOCKS = 6


def strip_gutenberg(text: str) -> str:
    """The book itself: the text between the "*** START OF ..." and "*** END OF ..." marker lines.

    Drops a BOM and turns CRLF/CR into \\n; accepts the marker variants of the files in use
    ("THIS"/"THE" PROJECT GUTENBERG EBOOK, with or without a title, with or without spaces after the
    asterisks). Paragraphs that still mention Project Gutenberg ("End of the Project Gutenberg
    EBook of ...", editor's notes) and the digitisers' credit lines at the top are dropped too, so
    no licence or boilerplate text reaches the model. Paragraphs come back separated by one blank
    line, their lines unchanged. Raises CorpusError when there is no start marker.
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    start = _PG_START.search(text)
    if not start:
        raise CorpusError("no '*** START OF THE PROJECT GUTENBERG EBOOK' marker line")
    end = _PG_END.search(text, start.end()) or _PG_END_FALLBACK.search(text, start.end())
    body = text[start.end() : end.start() if end else len(text)]
    blocks = [b.strip("\n") for b in _BLANK_LINES.split(body) if b.strip()]
    kept = [
        b
        for i, b in enumerate(blocks)
        if "gutenberg" not in b.lower() and not (i < _FRONT_BLOCKS and _PG_CREDITS.match(b))
    ]
    return "\n\n".join(kept) + ("\n" if kept else "")


#: A chapter (or part/volume/book) heading line: "CHAPTER I.", "Chapter 3", "CHAPTER 1. I AM BORN",
#: "BOOK II", or a roman numeral alone ("XII", "IV.").
_HEADING = re.compile(
    r"^(?:(?:CHAPTER|Chapter|BOOK|Book|PART|Part|VOLUME|Volume|STAVE|Stave)\s+"
    r"(?:[IVXLCDM]+|\d+|[A-Z][A-Za-z]+)\b[.:]?(?:\s.*)?|[IVXLCDM]+\.?)$"
)
_HEADING_MAX_CHARS = 80
#: Sections shorter than this are tables of contents or part titles, not prose.
_MIN_SECTION_WORDS = 30
#: Lines that are only a page or paragraph number ("2)", "[14]") interrupt sentences.
_NUMBER_LINE = re.compile(r"^\[?\d+[).\]]?$")


def _paragraph(lines: list[str]) -> str:
    """One paragraph from hard-wrapped lines: joined with spaces, italics underscores removed."""
    kept = [ln.strip() for ln in lines if not _NUMBER_LINE.match(ln.strip())]
    # Gutenberg marks italics as _word_; the underscores are typography, not text.
    return " ".join(" ".join(kept).replace("_", "").split())


def _book_documents(file: Path, body: str) -> list[Document]:
    """A stripped book as chapter documents (or one document when it has no chapter headings)."""
    sections: list[list[str]] = [[]]
    headings = 0
    for block in body.split("\n\n"):
        lines = block.split("\n")
        first = lines[0].strip()
        if len(first) <= _HEADING_MAX_CHARS and _HEADING.match(first):
            headings += 1
            sections.append([])
            lines = lines[1:]
        paragraph = _paragraph(lines)
        if paragraph:
            sections[-1].append(paragraph)
    base = f"gutenberg/{file.name}"
    if headings == 0:
        sentences = [s for p in sections[0] for s in split_sentences(p)]
        return [Document("gutenberg", base, sentences)]
    docs: list[Document] = []
    chapter = 0
    for i, paragraphs in enumerate(sections):
        if sum(len(p.split()) for p in paragraphs) < _MIN_SECTION_WORDS:
            continue
        if i == 0:
            doc_id = f"{base}#front"
        else:
            chapter += 1
            doc_id = f"{base}#chapter-{chapter}"
        docs.append(Document("gutenberg", doc_id, [s for p in paragraphs for s in split_sentences(p)]))
    return docs


def read_gutenberg(folder: str | Path) -> list[Document]:
    """Chapters of every Project Gutenberg book (*.txt, sorted) in a folder (or a single file).

    Each book is stripped of its header, footer and licence (`strip_gutenberg`), then split at
    chapter heading lines ("CHAPTER ...", "Chapter ...", part/volume/book lines, roman numerals
    alone); a book without such headings is one document. Text before the first heading is the
    document "#front"; sections under 30 words (tables of contents, part titles) are dropped.
    Paragraphs are separated by blank lines; their hard-wrapped lines are joined with spaces.
    Document ids are "gutenberg/<file>#chapter-<n>" (n counts kept chapters from 1).
    """
    docs: list[Document] = []
    for file in _text_files(folder, "Gutenberg"):
        try:
            body = strip_gutenberg(_read_text(file))
        except CorpusError as err:
            if str(err).startswith(str(file)):
                raise
            raise CorpusError(f"{file}: {err}") from None
        docs.extend(_book_documents(file, body))
    return docs


# ---------------------------------------------------------------------------------------------
# Corpus assembly
# ---------------------------------------------------------------------------------------------


def task_documents(texts: Sequence[str]) -> list[Document]:
    """In-domain texts (the fine-tuning inputs, no labels), each one document of its sentences."""
    return [Document("task", f"task#{i}", split_sentences(text)) for i, text in enumerate(texts)]


def load_corpus(cfg: CorpusConfig, task_texts: Sequence[str] | None = None, seed: int = 0) -> list[Document]:
    """All documents of `cfg.sources`, in the order given, without empty documents.

    'task' uses `task_texts` (CorpusError when they are not given). With `cfg.max_documents`, a
    seeded random choice of that many documents is kept, in their original order, so the same
    config and seed always give the same corpus.
    """
    docs: list[Document] = []
    for source in dict.fromkeys(cfg.sources):  # a source named twice is read once
        if source == "wikitext2":
            docs.extend(read_wikitext(cfg.wikitext_dir))
        elif source == "gutenberg":
            docs.extend(read_gutenberg(cfg.gutenberg_dir))
        elif source == "task":
            if task_texts is None:
                raise CorpusError("corpus source 'task' needs the task's training texts, none were given")
            docs.extend(task_documents(task_texts))
        else:
            raise CorpusError(f"unknown corpus source '{source}'")
    docs = [d for d in docs if d.sentences]
    if cfg.max_documents is not None and len(docs) > cfg.max_documents:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(docs), size=cfg.max_documents, replace=False))
        docs = [docs[i] for i in chosen]
    return docs


def split_heldout(
    docs: Sequence[Document], fraction: float, seed: int, minimum: int = 1
) -> tuple[list[Document], list[Document]]:
    """(train, heldout): a seeded share of whole documents held out, both in the original order.

    Whole documents, not sentences, are held out so no held-out text has a neighbour in training.
    With fraction > 0, at least `minimum` documents are held out (NSP needs two, to draw NotNext
    partners from) and at least one is kept.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"heldout fraction must be in [0, 1), got {fraction}")
    n = len(docs)
    n_held = round(fraction * n)
    if fraction > 0 and n >= 2:
        n_held = min(max(n_held, minimum), n - 1)
    if n_held == 0:
        return list(docs), []
    held = set(np.random.default_rng(seed).choice(n, size=n_held, replace=False).tolist())
    train = [d for i, d in enumerate(docs) if i not in held]
    heldout = [d for i, d in enumerate(docs) if i in held]
    return train, heldout
