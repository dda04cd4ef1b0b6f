"""Batch inference over OpenAI Batch API JSONL files (`mmcore batch`): exactly-once, resumable
output, on one machine (a pool of worker processes) or on a Ray cluster.

Modules: `jsonl` (lines, the appending writer, resume), `worker` (one loaded model answering
requests), `service` (a request body to the server's response body), `local` (in-process and
process-pool engines), `ray` (the Ray Data engine), `job` (a run: checks, skip, signals),
`progress` (bar and summary), `command` (the CLI command).
"""

from mmcore.batch.job import JobResult, run_batch
from mmcore.batch.jsonl import BatchInputError, BatchOutputError, ResultWriter, index_input, read_finished
from mmcore.batch.local import InlineEngine, ProcessPoolEngine
from mmcore.batch.worker import BatchWorker, ModelOptions

__all__ = [
    "BatchInputError",
    "BatchOutputError",
    "BatchWorker",
    "InlineEngine",
    "JobResult",
    "ModelOptions",
    "ProcessPoolEngine",
    "ResultWriter",
    "index_input",
    "read_finished",
    "run_batch",
]
