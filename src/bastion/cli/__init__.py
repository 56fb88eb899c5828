"""The ``bastion`` command line: server-side administration and the client commands."""
