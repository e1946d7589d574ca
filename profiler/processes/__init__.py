"""The processes that run measurements: the sweep's driver (runner), one supervised
measuring process (supervise), where measurements run (executors: threads or Dask), the
fork servers that have imported JAX (forkserver), the measuring process's own main
(worker), and the progress bar.
"""
