"""The stateless chunk kernel: a block's plan rows -> read windows -> map pixels -> resample ->
composite. Imports the plan contract, never the planner."""
