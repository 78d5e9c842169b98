"""Cohort: manifest, importers, HER2 label rules, QC, patient-level splits."""

from her2dlr.cohort.manifest import Manifest

__all__ = ["Manifest"]
