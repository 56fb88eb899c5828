"""Projects: shared spaces with members and roles that own datasets, models, jobs and federations."""
