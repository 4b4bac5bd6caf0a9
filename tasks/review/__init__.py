"""The experts' review: which frames they see first (`priority`), the queue file and its lifecycle
(`queue`, `store`), the exchange formats (Label Studio, CVAT, a live Label Studio), the simulated
expert, the hand-off to experts and the review stage. Specification: docs/REVIEW_QUEUE.md."""
