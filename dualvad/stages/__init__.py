"""The stages: their ordered registry (:mod:`.registry`), the runner every stage goes through
(:mod:`.runner`: fingerprint, skip, staging, failures, publish), its ``--dry-run`` planner (:mod:`.plan`),
the records later stages read (:mod:`.records`), signal handling (:mod:`.interrupts`) and settings
(:mod:`.settings`, :mod:`.config`). The stages themselves live with the Ray code they drive
(``dualvad.pipeline``, ``dualvad.train``). No Ray here."""
