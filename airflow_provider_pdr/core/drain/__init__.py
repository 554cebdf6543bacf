"""Draining a channel into a destination table, batch by batch, split by role: the plan
(plan.py), the destination's DDL (destination.py), the route (route.py), reading (read.py),
writing (write.py), acknowledging (ack.py) and the loop that runs them side by side
(pipeline.py, pace.py); assemble.py puts one drain together."""
