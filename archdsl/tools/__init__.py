"""Programs built on the public pipeline (archdsl.api): sweeps and the zoo."""
