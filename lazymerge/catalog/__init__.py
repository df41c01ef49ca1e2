"""What a store holds: its conventions, sources and levels, the /meta table, and how a user's store
becomes what each layer reads."""
