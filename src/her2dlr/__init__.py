"""her2dlr: deep learning radiomics of breast cancer (HER2 status and HER2-related prognosis)."""

__version__ = "0.1.0"

from her2dlr.errors import InputError, StudyFileError

__all__ = ["InputError", "StudyFileError", "__version__"]
