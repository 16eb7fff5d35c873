"""Personal data (PII) in the raw texts: an offline Presidio scan of the rows the pipeline uses,
and the policy applied to what it finds (`privacy.pii`: off, report, redact, fail).

* `fields`: which columns of a task type's table hold text (`TextFields`, given by the task type);
* `engine`: Presidio's analyzer with spaCy's small English pipeline, built once per process and
  never downloading anything (no spaCy model download, no tldextract suffix-list fetch);
* `scan`: findings per split, column and row (`scan_splits`);
* `redact`: each finding replaced by ``<TYPE>``, keeping word lists and answer offsets aligned;
* `report`: counts for the validation report, metrics, tags and the fail message (no values).
"""

from tlflow.data.pii.fields import TextFields

# Only the cheap description of text columns here: importing Presidio and spaCy is left to the
# modules that scan, so importing the task types stays quick.
__all__ = ["TextFields"]
