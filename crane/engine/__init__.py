"""The training engine: everything between a processed dataset and a finished run folder.

Modules, each with one job (nothing is imported here, so that the workflow's planning code
can read `settings` without loading torch):

- settings:   TrainingConfig and which trainer keys a model's point may set (split_point)
- inputs:     training data and item features (through the verifying feature reader), models
- runtime:    seeds, deterministic CPU kernels, allocator tuning
- sampling:   epochs of (user, positive, negative) batches
- stopping:   MMRec's early-stopping rule
- hooks:      callbacks the loop calls (benchmarks and tests observe a run through them)
- loop:       epochs, validation, early stopping, best state, the resume state
- resume:     what a resume file holds besides the model (RNG states) and whose it is
- evaluate:   full-ranking evaluation (topk: exact CPU top-k; metrics: per-user metrics)
- run_folder: the files of one run folder; provenance: what made it
- runner:     one run end to end (fit_and_evaluate, train_run, evaluate_run)
"""
