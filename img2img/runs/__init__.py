"""Run folders on disk: their layout and atomic writes (`folders`), checkpoints (`checkpoints`),
and the HTML report with its charts (`report`, `charts`)."""
