"""The ``dockyard`` command line: thin commands over the library."""
