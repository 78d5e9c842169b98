"""``python -m her2dlr``: the command line, also as ``torchrun --nproc_per_node N -m her2dlr train deep STUDY``."""

from her2dlr.cli import app

if __name__ == "__main__":
    app(prog_name="her2dlr")
