"""The board layer: what is built from many cells.

The leaderboard (:mod:`.leaderboard`, :mod:`.build`: groups, statistics, the
cost-respecting ranking), its text tables (:mod:`.tables`), the rendered page and plots
(:mod:`.render`), and ``leaderboard verify`` (:mod:`.verify`: committed cells re-run and
compared within :mod:`.tolerance`).
"""
