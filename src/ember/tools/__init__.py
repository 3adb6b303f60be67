"""Tools that look inside a compile: ``ember bisect`` (:mod:`.bisect`) and ``ember view``
(:mod:`.view`), both over :mod:`.stages`, which records what every compiler stage produced."""
