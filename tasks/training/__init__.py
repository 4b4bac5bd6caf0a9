"""Training and evaluation: the labelled frames (`prepare`), full-resolution crops, Ultralytics
training of one round, and the detection metrics on the fixed validation videos."""
