"""The paper-style benchmark: MMLGNet, its ablations, SDHSI-Net and tuned classic baselines.

A client of the library (``mmlgnet benchmark`` runs it). Every method is fitted on the
same training pixels and scored on the same test pixels for each seed; nothing (epoch
count, checkpoint, hyperparameter) is chosen on the test split:

* the networks take the estimators' defaults on every dataset, with the epoch count
  fixed in advance (``epochs``) and the last epoch's model scored;
* what differs between datasets is set by one rule or chosen inside the run by the
  same code on every dataset: the patch side from the images' size
  (:func:`patch_size_for`), and the input in front of the MMLGNet networks (spectra as
  they are or at unit length, every band or a PCA) on one inner split of each fit's
  training pixels (:mod:`sklearn_mmlgnet.benchmark._choice`); the choices are written
  in the table and in ``results.json``;
* the classic rows choose their hyperparameters by inner cross-validation on the
  training pixels only (spatially blocked inner folds on scenes, plot-grouped inner
  folds on IDTReeS; see :mod:`sklearn_mmlgnet.baselines`).

Scenes (synthetic, Trento, MUUFL, Houston 2013, Jasper Ridge) use the loader's
train / test masks. IDTReeS, a set of small plots, uses grouped cross-validation:
fixed plot-grouped folds (the same for every seed), every pixel predicted once out
of fold, scored per pixel (OA, AA, kappa) and per crown (mean pixel probabilities,
then accuracy and macro F1, as the competition scored).

Results are appended to ``results.json`` / ``results.csv`` after every run and the
Markdown table is rewritten, so an interrupted benchmark leaves every finished run
on disk.

Modules: ``_data`` (datasets, IDTReeS folds, the patch-side rule), ``_methods`` (the
rows), ``_choice`` (the network input chosen on inner validation), ``_run``
(:class:`BenchmarkRun`), ``_report`` (the Markdown table and the CSV).
"""

from ._choice import INPUT_CANDIDATES, choose_network_input, inner_split, input_candidates
from ._data import DATASETS, IDTREES_FOLDS, load_dataset, patch_size_for
from ._methods import (
    SDHSI_PCA,
    SEARCH_SAMPLES,
    Method,
    default_methods,
    network_pipeline,
    select_methods,
)
from ._report import markdown_table
from ._run import BenchmarkRun

__all__ = ["BenchmarkRun", "Method", "default_methods", "select_methods", "markdown_table",
           "network_pipeline", "load_dataset", "patch_size_for", "choose_network_input",
           "inner_split", "input_candidates", "DATASETS", "IDTREES_FOLDS", "INPUT_CANDIDATES",
           "SDHSI_PCA", "SEARCH_SAMPLES"]
