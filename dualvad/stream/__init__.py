"""Live cameras: a stream detector beside the file detector (:mod:`dualvad.detector`), sharing its scorer,
allocation and VLM judge; events out as JSONL lines, webhooks and Server-Sent Events."""
