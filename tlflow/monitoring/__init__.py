"""Prediction monitoring: what the served model sees, compared with what it was trained on.

- `descriptors`: what is kept of each text — length, the share of unknown (UNK) tokens under the
  model's own tokenizer, the share of non-ASCII characters, the model's [CLS] vector — and its
  prediction; never the text itself.
- `window`: the prediction window of a model, appended by `batch_predict` and (when enabled) by
  `tlflow serve`; texts are stored only redacted, when the version was trained under
  `privacy.pii: redact`.
- `reference`: the same descriptors of the champion's training rows (its own config and data).
- `drift`: reference vs current window with Evidently (one drift test per descriptor, the [CLS]
  vectors as their distance from the training centroid), the HTML report and the drift score.
- `decision`: whether the drift triggers retraining (`monitoring.threshold`, cooldown) and where
  that is recorded; `recording`: the recorder of a registered version (`batch_predict`, `tlflow serve`).
"""
