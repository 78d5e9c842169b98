"""The ``--scheduler ADDRESS`` option of the commands that can run on a lab cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from her2dlr.config import Study

__all__ = ["SchedulerOption", "with_scheduler"]

SchedulerOption = Annotated[
    str | None,
    typer.Option("--scheduler", help="Address of a running Dask scheduler (tcp://host:8786) or Ray cluster "
                                     "(ray://host:10001): extraction and the outer folds run there (backend dask, or "
                                     "ray for ray:// addresses); default: the study's `scheduler` keys."),
]


def with_scheduler(study: Study, scheduler: str | None, *, add_learn: bool = False) -> Study:
    """The study with ``scheduler`` in its ``radiomics`` and ``learn`` sections (and a cluster backend).

    A backend already set to ``dask`` or ``ray`` is kept; otherwise a ``ray://`` address means
    ``ray`` and any other ``dask``. The ``learn`` section is only changed when the study has
    one, or added (with its defaults) when ``add_learn``.
    """
    if not scheduler:
        return study
    from her2dlr.learn.settings import LearnSettings
    from her2dlr.radiomics.parallel import scheduler_backend

    def pointed(section: Any) -> Any:
        backend = scheduler_backend(scheduler, section.backend)
        return section.model_validate({**section.model_dump(), "backend": backend, "scheduler": scheduler})

    update = {"radiomics": pointed(study.radiomics)}
    if study.learn is not None or add_learn:
        update["learn"] = pointed(study.learn or LearnSettings())
    pointed_study = study.model_copy(update=update)
    # `her2dlr run` runs the stages the study file names (its fields set): an address given on the
    # command line must not make a section the file lacks look configured.
    pointed_study.__pydantic_fields_set__ = set(study.model_fields_set)
    return pointed_study
