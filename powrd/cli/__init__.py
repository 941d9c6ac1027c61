"""Command-line entry points (`powrd run | ctl | import | export | reindex | keygen | demo`)."""
