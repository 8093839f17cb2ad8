"""mmhal: privileged modality learning via multimodal hallucination (MMH).

The public API (``mmhal.api``): ``run``, ``tune``, ``predict``, ``export`` and ``report``, each a command of the
command line with its options as keyword arguments, returning a typed result (``RunResult``, ...). Importing
mmhal imports neither torch nor the engine; each function does when called.
"""

__version__ = "0.1.0"

from .api import (ExportResult, PredictResult, ReportResult, RunResult, TuneResult, export, predict, report,  # noqa: E402
                  run, tune)
from .errors import UserError  # noqa: E402

__all__ = ["run", "tune", "predict", "export", "report", "RunResult", "TuneResult", "PredictResult", "ExportResult",
           "ReportResult", "UserError", "__version__"]
