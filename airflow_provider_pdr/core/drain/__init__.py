"""Draining a channel into a destination table, batch by batch, split by role: what a reflection
is (spec.py), its plan (plan.py), the destination's DDL (destination.py), the route its rows take
(route.py), reading (read.py), writing (write.py), acknowledging (ack.py), applying inside the
source database (in_database.py), and the loop that runs them side by side (pipeline.py, pace.py);
assemble.py puts one drain together."""
