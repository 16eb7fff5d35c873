"""Model selection: which base model and settings fit a task, chosen on its validation split.

`space` turns a trial's draws into a pipeline config, `study` holds the Optuna study (storage,
sampler, pruner, the trial table and the winner), `candidates` resolves the base models to try,
`report` writes the tables and charts, `lineage` names the tags a chosen model carries.
"""
