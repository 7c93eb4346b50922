"""Raw logs in, validated typed events out: ingest, synth (generator), stats, validate."""
