"""The import pipeline: discover -> read -> normalize -> transcode -> verify -> persist.

`transcode` and `sources` run in worker processes and import no Django; `run` (the job driver) and `persist`
run in the task worker with the database.
"""
