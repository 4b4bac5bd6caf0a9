"""The project folder a round runs in: its paths (`paths.Workspace`, `RoundPaths`), params.yaml
sections, atomic file writes, the offline set-up of the process, and how bad input is reported."""
