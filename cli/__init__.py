"""The ``pointseq`` command line: demo, cache build/info/verify, train."""
