"""Paper-style tables, significance tests and plots from the study's run folders.

`build_report` writes everything; the modules below each build one table or figure:
collect (find and load runs), aggregate (mean ± std over seeds), significance (paired tests
on per-user metrics), tables (Markdown / LaTeX / CSV rendering), main_results, datasets_table,
hyperparameters, user_activity, ablation, efficiency, plots.

Import from `crane.report.build`; this package imports nothing itself, so that `crane --help`
stays fast (scipy and matplotlib load only when a table is built).
"""
