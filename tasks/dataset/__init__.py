"""The VISEM-Tracking dataset on disk: its layout and names, the reader, the validator, YOLO label
files, clinical CSVs, the real per-frame counts, a label-faithful replica, the synthetic twin's truth,
and a contact sheet. The exact format is in docs/VISEM_FORMAT.md."""
