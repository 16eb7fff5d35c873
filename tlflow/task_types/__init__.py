"""Task types, one folder each (text_classification, sentence_pair, token_classification,
question_answering): everything about a task lives with it; `registry` lists them."""
