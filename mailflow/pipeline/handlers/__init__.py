"""The steps of the pipeline, one job each, in the order :data:`mailflow.app.HANDLERS`
runs them: route, triage, authenticate, recuse, file, commands, clocks, acknowledge,
to_committee (and the domain's own steps, listed there too)."""
