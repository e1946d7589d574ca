"""The report's views: each module draws one subject's sections and writes its summary
sentences, registered with profiler.report.registry. Every module here is imported when a
page is built; adding a file is all it takes to add a view."""
