"""Reporting checklists (TRIPOD+AI, CLEAR, METRICS) as data, filled from what the run knows.

The item texts are short paraphrases written for this toolkit; the numbering follows the
published checklists, whose full wording authors should consult:

* TRIPOD+AI: Collins GS et al., BMJ 2024;385:e078378 (27 items, several with parts a-g);
* CLEAR: Kocak B et al., Insights into Imaging 2023;14:75 (58 items);
* METRICS: Kocak B et al., Insights into Imaging 2024;15:8 (30 items).

Each item names the *fact* of the run that answers it (:class:`RunFacts`). A fact the run
knows becomes the item's answer with the report section to look at; every other item is
marked :data:`TODO` ("to be completed by the authors").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

__all__ = [
    "CHECKLISTS",
    "CLEAR",
    "FILLED",
    "METRICS",
    "TODO",
    "TRIPOD_AI",
    "Checklist",
    "ChecklistItem",
    "RunFacts",
    "coverage",
    "fact_keys",
    "fill_checklist",
]

#: Status of items the run cannot answer.
TODO = "to be completed by the authors"
#: Status of items answered from the run.
FILLED = "from the run"


@dataclass(frozen=True)
class ChecklistItem:
    """One checklist item.

    Attributes
    ----------
    number : str
        Item number as published (``"12c"``).
    topic : str
        Part of the paper (``"Methods: analytical methods"``).
    text : str
        What the item asks for (paraphrased).
    fact : str or None
        Key of the :class:`RunFacts` entry that answers it (None: only the authors can).
    """

    number: str
    topic: str
    text: str
    fact: str | None = None


@dataclass(frozen=True)
class Checklist:
    """A named list of items."""

    key: str
    name: str
    reference: str
    items: tuple[ChecklistItem, ...]


@dataclass
class RunFacts:
    """What the run knows, as short sentences keyed by fact name, each with the report section it comes from.

    Attributes
    ----------
    facts : dict
        Fact key -> answer text.
    sections : dict
        Fact key -> title of the report section with the details.
    """

    facts: dict[str, str] = field(default_factory=dict)
    sections: dict[str, str] = field(default_factory=dict)

    def set(self, key: str, text: str | None, section: str = "") -> None:
        """Record a fact (``None`` or empty text: unknown)."""
        if text:
            self.facts[key] = text
            if section:
                self.sections[key] = section

    def get(self, key: str | None) -> str | None:
        return self.facts.get(key) if key else None


def _items(topic_items: Sequence[tuple[str, str, str, str | None]]) -> tuple[ChecklistItem, ...]:
    return tuple(ChecklistItem(n, t, x, f) for n, t, x, f in topic_items)


TRIPOD_AI = Checklist("tripod_ai", "TRIPOD+AI", "Collins GS et al. BMJ 2024;385:e078378", _items([
    ("1", "Title", "Say the study develops or evaluates a prediction model, for which population and outcome.", None),
    ("2", "Abstract", "Structured abstract following the TRIPOD+AI for Abstracts list.", None),
    ("3a", "Introduction: background", "Medical context and why a model is needed (development or evaluation).", None),
    ("3b", "Introduction: background", "Intended use: purpose, care setting, target population, intended users.",
     "intended_use"),
    ("3c", "Introduction: background", "Known health inequalities between sociodemographic groups.", None),
    ("4", "Introduction: objectives", "Objectives, including whether the study develops, evaluates or both.",
     "objectives"),
    ("5a", "Methods: data", "Sources of data for development and evaluation, and why they were chosen.", "data_source"),
    ("5b", "Methods: data", "Dates of data collection (start, end of accrual, end of follow-up).", "dates"),
    ("6a", "Methods: participants", "Setting (care level) and number and location of centres.", "centres"),
    ("6b", "Methods: participants", "Eligibility criteria of participants.", "eligibility"),
    ("6c", "Methods: participants", "Treatments received, where relevant.", "treatment"),
    ("7", "Methods: data preparation", "Pre-processing and quality checks of the data, and whether they differ "
     "between groups.", "preprocessing"),
    ("8a", "Methods: outcome", "Definition of the outcome, how and when it was assessed, time horizon.", "outcome"),
    ("8b", "Methods: outcome", "Qualifications of those assessing an outcome that needs judgement.", None),
    ("8c", "Methods: outcome", "Whether outcome assessors were blinded to the predictors.", None),
    ("9a", "Methods: predictors", "Choice of candidate predictors and any pre-selection before modelling.", "predictors"),
    ("9b", "Methods: predictors", "Definition of each predictor, how and when it was measured.", "predictor_definition"),
    ("9c", "Methods: predictors", "Qualifications of those assessing predictors that need judgement "
     "(e.g. lesion outlines).", None),
    ("10", "Methods: sample size", "How the sample size was arrived at, for development and evaluation, and why it "
     "is enough.", "sample_size"),
    ("11", "Methods: missing data", "How missing data were handled and why.", "missing_data"),
    ("12a", "Methods: analysis", "How the data were used (development, evaluation) and partitioned.", "data_split"),
    ("12b", "Methods: analysis", "How predictors were handled (transformation, scaling, selection).", "feature_processing"),
    ("12c", "Methods: analysis", "Model type, every model-building step, tuning and internal validation.", "modelling"),
    ("12d", "Methods: analysis", "How heterogeneity between clusters (centres) was handled.", "clusters"),
    ("12e", "Methods: analysis", "Performance measures (discrimination, calibration, utility) and how models were "
     "compared.", "performance_measures"),
    ("12f", "Methods: analysis", "Any model updating (e.g. recalibration) after evaluation.", None),
    ("12g", "Methods: analysis", "How predictions of the evaluated model were computed (formula, code, object).",
     "model_spec"),
    ("13", "Methods: class imbalance", "Whether class-imbalance methods were used, why, and any recalibration.",
     "class_imbalance"),
    ("14", "Methods: fairness", "Approaches used to address fairness and their rationale.", None),
    ("15", "Methods: model output", "Model output (probability, class) and how any classification threshold was "
     "chosen.", "model_output"),
    ("16", "Methods: training vs evaluation", "Differences between development and evaluation data "
     "(setting, eligibility, outcome, predictors).", "train_vs_test"),
    ("17", "Methods: ethics", "Ethics committee approval and consent or waiver.", None),
    ("18a", "Open science", "Funding.", None),
    ("18b", "Open science", "Conflicts of interest.", None),
    ("18c", "Open science", "Where the protocol can be found (or that none was written).", None),
    ("18d", "Open science", "Registration (or that the study was not registered).", None),
    ("18e", "Open science", "Availability of the study data.", None),
    ("18f", "Open science", "Availability of the analysis code.", "code"),
    ("19", "Patient and public involvement", "Any patient and public involvement, or a statement of none.", None),
    ("20a", "Results: participants", "Flow of participants, with numbers with and without the outcome "
     "(and follow-up).", "flow"),
    ("20b", "Results: participants", "Characteristics of participants overall and per data source "
     "(predictors, outcome events, missing data).", "baseline"),
    ("20c", "Results: participants", "Comparison of important predictors between development and evaluation data.",
     "baseline_split"),
    ("21", "Results: model development", "Number of participants and outcome events in each analysis.",
     "analysis_counts"),
    ("22", "Results: model specification", "The full model (formula, code, object) so others can make predictions.",
     "model_spec"),
    ("23a", "Results: model performance", "Performance estimates with confidence intervals, also in key subgroups.",
     "performance"),
    ("23b", "Results: model performance", "Heterogeneity of performance across clusters, if examined.", "clusters"),
    ("24", "Results: model updating", "Results of any model updating and the updated model's performance.", None),
    ("25", "Discussion: interpretation", "Overall interpretation, including fairness, against objectives and "
     "previous work.", None),
    ("26", "Discussion: limitations", "Limitations (representativeness, sample size, overfitting, missing data) "
     "and their effects.", None),
    ("27a", "Discussion: usability", "How poor-quality or missing inputs should be assessed and handled in use.",
     "input_quality"),
    ("27b", "Discussion: usability", "Whether users interact with the input data or model, and the expertise needed.",
     None),
    ("27c", "Discussion: usability", "Next steps, with a view to applicability and generalisability.", None),
]))


CLEAR = Checklist("clear", "CLEAR", "Kocak B et al. Insights Imaging 2023;14:75", _items([
    ("1", "Title", "Title names the radiomics methodology.", None),
    ("2", "Abstract", "Structured summary with the key information.", None),
    ("3", "Keywords", "Keywords relevant to radiomics.", None),
    ("4", "Introduction", "Scientific or clinical background.", None),
    ("5", "Introduction", "Rationale for a radiomics approach.", None),
    ("6", "Introduction", "Study objectives.", "objectives"),
    ("7", "Methods: study design", "Adherence to guidelines or checklists (this report includes CLEAR).",
     "checklists"),
    ("8", "Methods: study design", "Ethical details (approval, consent, data protection).", None),
    ("9", "Methods: study design", "Sample size calculation.", "sample_size"),
    ("10", "Methods: study design", "Study nature (retrospective, prospective).", None),
    ("11", "Methods: study design", "Eligibility criteria.", "eligibility"),
    ("12", "Methods: study design", "Flowchart of the technical pipeline.", "pipeline"),
    ("13", "Methods: data", "Data source (private, public) and centres.", "data_source"),
    ("14", "Methods: data", "Overlap with data of earlier studies.", None),
    ("15", "Methods: data", "Data split method.", "data_split"),
    ("16", "Methods: data", "Imaging protocol (acquisition and reconstruction).", "imaging_protocol"),
    ("17", "Methods: data", "Definition of non-radiomic predictors.", "clinical_predictors"),
    ("18", "Methods: data", "Definition of the reference standard (outcome).", "outcome"),
    ("19", "Methods: segmentation", "Segmentation strategy (manual, semi-automatic, automatic; 2D or 3D).",
     "segmentation"),
    ("20", "Methods: segmentation", "Who segmented (number, experience, blinding).", None),
    ("21", "Methods: pre-processing", "Image pre-processing details.", "image_preprocessing"),
    ("22", "Methods: pre-processing", "Resampling method and parameters.", "resampling"),
    ("23", "Methods: pre-processing", "Discretisation method and parameters.", "discretisation"),
    ("24", "Methods: pre-processing", "Image types (original, filtered, transformed).", "image_types"),
    ("25", "Methods: feature extraction", "Feature extraction software and version.", "extraction_software"),
    ("26", "Methods: feature extraction", "Feature classes.", "feature_classes"),
    ("27", "Methods: feature extraction", "Number of features.", "n_features"),
    ("28", "Methods: feature extraction", "Default configuration statement for parameters not given.",
     "extraction_params"),
    ("29", "Methods: data preparation", "Handling of missing data.", "missing_data"),
    ("30", "Methods: data preparation", "Class imbalance and how it was handled.", "class_imbalance"),
    ("31", "Methods: data preparation", "Segmentation reliability analysis (e.g. feature ICC).", "robustness"),
    ("32", "Methods: data preparation", "Feature scaling (normalisation, standardisation).", "scaling"),
    ("33", "Methods: data preparation", "Dimension reduction (feature selection) details.", "feature_selection"),
    ("34", "Methods: modelling", "Algorithm details.", "algorithms"),
    ("35", "Methods: modelling", "Training and tuning details.", "tuning"),
    ("36", "Methods: modelling", "Handling of confounders.", None),
    ("37", "Methods: modelling", "Model selection strategy.", "model_selection"),
    ("38", "Methods: evaluation", "Testing technique (internal, external).", "testing"),
    ("39", "Methods: evaluation", "Performance metrics and why they were chosen.", "performance_measures"),
    ("40", "Methods: evaluation", "Uncertainty evaluation (confidence intervals).", "uncertainty"),
    ("41", "Methods: evaluation", "Statistical comparison of model performance (e.g. DeLong's test).", "comparison"),
    ("42", "Methods: evaluation", "Comparison with a non-radiomic approach or proof of added clinical value.",
     "non_radiomic"),
    ("43", "Methods: evaluation", "Interpretability and explainability methods.", "explainability"),
    ("44", "Results", "Baseline demographic and clinical characteristics.", "baseline"),
    ("45", "Results", "Flowchart of eligibility.", "flow"),
    ("46", "Results", "Feature statistics (reproducibility, selection).", "feature_stats"),
    ("47", "Results", "Model performance.", "performance"),
    ("48", "Results", "Comparison with a non-radiomic approach.", "non_radiomic"),
    ("49", "Discussion", "Overview of the important findings.", None),
    ("50", "Discussion", "Earlier work and how this study differs.", None),
    ("51", "Discussion", "Practical implications.", None),
    ("52", "Discussion", "Strengths and limitations (bias, generalisability).", None),
    ("53", "Open science", "Sharing of images with segmentations.", None),
    ("54", "Open science", "Sharing of radiomic feature data.", "feature_data"),
    ("55", "Open science", "Sharing of clinical data.", None),
    ("56", "Open science", "Sharing of code (pre-processing, extraction, modelling).", "code"),
    ("57", "Open science", "Sharing of the final model.", "model_files"),
    ("58", "Open science", "Sharing of a ready-to-use system.", None),
]))


METRICS = Checklist("metrics", "METRICS", "Kocak B et al. Insights Imaging 2024;15:8", _items([
    ("1", "Study design", "Adherence to radiomics and/or machine-learning reporting guidelines.", "checklists"),
    ("2", "Study design", "Eligibility criteria that describe a representative population.", "eligibility"),
    ("3", "Study design", "High-quality reference standard with a clear definition.", "outcome"),
    ("4", "Study design", "Multi-centre data.", "centres"),
    ("5", "Imaging data", "Clinical translatability of the imaging data source.", "modality"),
    ("6", "Imaging data", "Imaging protocol with acquisition parameters.", "imaging_protocol"),
    ("7", "Imaging data", "Interval between imaging and the reference standard.", None),
    ("8", "Segmentation", "Transparent description of the segmentation method.", "segmentation"),
    ("9", "Segmentation", "Formal evaluation of fully automated segmentation (if used).", "auto_segmentation"),
    ("10", "Segmentation", "Test-set masks made by a single reader or an automated tool.", None),
    ("11", "Image processing and feature extraction", "Appropriate, transparently described image pre-processing.",
     "image_preprocessing"),
    ("12", "Image processing and feature extraction", "Standardised feature extraction software.",
     "extraction_software"),
    ("13", "Image processing and feature extraction", "Extraction parameters reported (or a default-configuration "
     "statement).", "extraction_params"),
    ("14", "Feature processing", "Removal of non-robust features.", "robustness"),
    ("15", "Feature processing", "Removal of redundant features.", "redundancy"),
    ("16", "Feature processing", "Dimensionality appropriate for the data size.", "dimensionality"),
    ("17", "Feature processing", "Robustness assessment of end-to-end deep learning pipelines (if used).", None),
    ("18", "Preparation for modelling", "Proper data partitioning.", "data_split"),
    ("19", "Preparation for modelling", "Handling of confounding factors.", None),
    ("20", "Metrics and comparison", "Performance metrics appropriate for the task.", "performance_measures"),
    ("21", "Metrics and comparison", "Consideration of uncertainty.", "uncertainty"),
    ("22", "Metrics and comparison", "Calibration assessment.", "calibration"),
    ("23", "Metrics and comparison", "Use of uni-parametric imaging or proof of its inferiority.", "modality"),
    ("24", "Metrics and comparison", "Comparison with a non-radiomic approach or proof of added clinical value.",
     "non_radiomic"),
    ("25", "Metrics and comparison", "Comparison with simple or classical statistical models.", "simple_model"),
    ("26", "Testing", "Internal testing.", "testing"),
    ("27", "Testing", "External testing.", "external_testing"),
    ("28", "Open science", "Data availability.", None),
    ("29", "Open science", "Code availability.", "code"),
    ("30", "Open science", "Model availability.", "model_files"),
]))

#: The checklists the report fills, in order.
CHECKLISTS: tuple[Checklist, ...] = (TRIPOD_AI, CLEAR, METRICS)


def fill_checklist(checklist: Checklist, facts: RunFacts) -> pd.DataFrame:
    """One row per item: ``item, topic, requirement, status, answer, see``.

    ``status`` is ``"from the run"`` when the run answers the item, else :data:`TODO`; ``see``
    names the report section with the details.
    """
    rows = []
    for item in checklist.items:
        answer = facts.get(item.fact)
        rows.append({
            "item": item.number,
            "topic": item.topic,
            "requirement": item.text,
            "status": FILLED if answer else TODO,
            "answer": answer or TODO,
            "see": facts.sections.get(item.fact, "") if answer and item.fact else "",
        })
    return pd.DataFrame(rows, columns=["item", "topic", "requirement", "status", "answer", "see"])


def fact_keys(checklists: Sequence[Checklist] = CHECKLISTS) -> set[str]:
    """Every fact key the checklists use."""
    return {i.fact for c in checklists for i in c.items if i.fact}


def coverage(tables: Mapping[str, pd.DataFrame]) -> dict[str, tuple[int, int]]:
    """Checklist key -> (items answered from the run, items)."""
    return {k: (int((t["status"] == FILLED).sum()), len(t)) for k, t in tables.items()}
