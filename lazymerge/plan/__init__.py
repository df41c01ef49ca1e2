"""The plan contract: the plan table's schema, the Plan, what a task carries and reads, its memory
budget and cost. The planner writes plans and the kernel reads them; nothing here imports the planner."""
