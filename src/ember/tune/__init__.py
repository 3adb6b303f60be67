"""The auto-tuner (``ember tune``): searches the schedule knobs of each distinct kernel of a model
by measuring candidates in child processes, guided by a cost model, and records the results for
``ember.compile(..., tuning=FILE)`` to replay (:mod:`.tuner`)."""

from .tuner import TuneResult, Tuner, default_records, tune

__all__ = ["TuneResult", "Tuner", "default_records", "tune"]
