"""Pseudo-labels: confidence bands per class (accept / review / reject), the next round's merged
training set with provenance per box, and the pseudo-labels' quality against synthetic truth."""
