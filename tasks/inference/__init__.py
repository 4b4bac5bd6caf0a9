"""Pseudo-labelling the unlabelled clips: the backends (OpenVINO on CPU, PyTorch) fed by a decoding
thread, one resumable prediction file per clip. Benchmarks in docs/BENCHMARKS.md."""
