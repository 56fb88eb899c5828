"""The federation coordinator inside the server: rounds, admission of sealed updates, aggregation.

``bastion.wiring`` builds the coordinator (whose ``start``/``close`` run the deadline ticker) and the
two services the routes call.
"""
