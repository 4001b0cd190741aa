"""Judge0 CE's API: submissions stored and queued, run by the runtimes."""
