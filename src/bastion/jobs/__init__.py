"""Remote training jobs: states, the service, the database queue, workers and per-job processes.

Kept empty on purpose: ``bastion.jobs.child`` runs in every job process and must import nothing it
does not need (no SQLAlchemy, no FastAPI).
"""
