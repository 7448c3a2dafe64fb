"""Running profiles: requests, cache states, fresh child processes, sessions.

The parent resolves the model, puts each cache into the state asked for, runs every
repetition in a child (:mod:`profiler.run.child`) and collects the records.
"""
