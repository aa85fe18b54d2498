"""`make bench`: dockyard and the reference registry (distribution 2.8.2), side by side, as ratios."""
