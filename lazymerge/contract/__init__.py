"""The plan contract, between the planner (which writes plans) and the kernel (which reads them): the
plan table's schema, the Plan, what a task carries and reads, its memory budget and cost. Nothing here
imports the planner."""
